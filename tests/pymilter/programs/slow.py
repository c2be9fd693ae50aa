"""Chain-member fixtures: a pymilter class that blocks, one that raises."""

import time

import Milter


class Sleeper(Milter.Base):
    def envfrom(self, mailfrom, *params):
        time.sleep(2)
        return Milter.CONTINUE


class Raiser(Milter.Base):
    def eom(self):
        raise RuntimeError("boom at end of message")
