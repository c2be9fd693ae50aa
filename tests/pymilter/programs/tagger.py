"""A pymilter program with one callback, eom: every other step is switched
off by Milter.Base's @nocallback defaults, as in most small filters.

Usage: tagger.py SOCKET
"""

import sys

import Milter


class Tagger(Milter.Base):
    def eom(self):
        self.addheader("X-Tagged", "yes")
        return Milter.CONTINUE


if __name__ == "__main__":
    Milter.factory = Tagger
    Milter.runmilter("tagger", sys.argv[1], 60)
