"""A pymilter program using the optional protocol steps: header values with
their leading space, rejected recipients, unknown commands, SKIP.

Usage: steps.py SOCKET
"""

import sys

import Milter


@Milter.header_leading_space
@Milter.rejected_recipients
class Steps(Milter.Base):
    def __init__(self):
        self.values = []

    def envrcpt(self, to, *params):
        return Milter.CONTINUE

    def header(self, name, value):
        self.values.append(value)
        return Milter.CONTINUE

    def body(self, chunk):
        return Milter.SKIP

    def unknown(self, cmd):
        self.setreply("502", "5.5.2", "not here: " + cmd)
        return Milter.REJECT

    def eom(self):
        self.addheader("X-Values", "|".join(self.values))
        return Milter.CONTINUE


if __name__ == "__main__":
    Milter.factory = Steps
    Milter.runmilter("steps", sys.argv[1], 60)
