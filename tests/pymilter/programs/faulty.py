"""A pymilter program whose envrcpt raises for one recipient.

Usage: faulty.py SOCKET [reject|tempfail|continue]
"""

import sys

import Milter


class Faulty(Milter.Base):
    def envrcpt(self, to, *params):
        if "crash" in to:
            raise RuntimeError("the filter fell over")
        return Milter.CONTINUE


if __name__ == "__main__":
    Milter.factory = Faulty
    if len(sys.argv) > 2:
        Milter.set_exception_policy(getattr(Milter, sys.argv[2].upper()))
    Milter.runmilter("faulty", sys.argv[1], 60)
