"""The reference filter on pymilter (C libmilter + Python callbacks).

    python3 bench/pymilter_ref.py SOCKET            # a reply per callback
    python3 bench/pymilter_ref.py SOCKET --noreply  # @Milter.noreply on all but eom

The same file runs unchanged on miltrd's pymilter compatibility layer.
"""

import sys

import Milter

NOREPLY = "--noreply" in sys.argv[2:]


def _maybe_noreply(func):
    return Milter.noreply(func) if NOREPLY else func


class Ref(Milter.Base):
    @_maybe_noreply
    def connect(self, hostname, family, hostaddr):
        return Milter.CONTINUE

    @_maybe_noreply
    def hello(self, hostname):
        return Milter.CONTINUE

    @_maybe_noreply
    def envfrom(self, f, *args):
        return Milter.CONTINUE

    @_maybe_noreply
    def envrcpt(self, to, *args):
        return Milter.CONTINUE

    @_maybe_noreply
    def data(self):
        return Milter.CONTINUE

    @_maybe_noreply
    def header(self, name, value):
        return Milter.CONTINUE

    @_maybe_noreply
    def eoh(self):
        return Milter.CONTINUE

    @_maybe_noreply
    def body(self, chunk):
        return Milter.CONTINUE

    def eom(self):
        self.addheader("X-Bench", "pymilter")
        return Milter.CONTINUE


if __name__ == "__main__":
    Milter.factory = Ref
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("ref", sys.argv[1], 240)
