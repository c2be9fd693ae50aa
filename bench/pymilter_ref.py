"""The reference filter on pymilter (C libmilter + Python callbacks)."""

import sys

import Milter


class Ref(Milter.Base):
    def connect(self, hostname, family, hostaddr):
        return Milter.CONTINUE

    def hello(self, hostname):
        return Milter.CONTINUE

    def envfrom(self, f, *args):
        return Milter.CONTINUE

    def envrcpt(self, to, *args):
        return Milter.CONTINUE

    def data(self):
        return Milter.CONTINUE

    def header(self, name, value):
        return Milter.CONTINUE

    def eoh(self):
        return Milter.CONTINUE

    def body(self, chunk):
        return Milter.CONTINUE

    def eom(self):
        self.addheader("X-Bench", "pymilter")
        return Milter.CONTINUE


if __name__ == "__main__":
    Milter.factory = Ref
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("ref", sys.argv[1], 240)
