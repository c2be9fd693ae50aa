"""A pymilter program whose callbacks block: envrcpt sleeps for "slow@"
recipients, eom calls progress(). Usage: blocking.py SOCKET"""

import sys
import time

import Milter


class Blocking(Milter.Base):
    def envrcpt(self, to, *params):
        if to.startswith("<slow@"):
            time.sleep(3)
        return Milter.CONTINUE

    def eom(self):
        self.progress()
        self.addheader("X-Blocking", "done")
        return Milter.CONTINUE


if __name__ == "__main__":
    Milter.factory = Blocking
    Milter.runmilter("blocking", sys.argv[1], 60)
