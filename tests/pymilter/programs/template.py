"""The ``template`` module pymilter's testsample.py imports.

pymilter's source distribution does not ship it (its test.py and
testsample.py import it); this is a small filter of our own in its place,
with the class name testsample.py expects.
"""

import Milter


class myMilter(Milter.Base):
    def __init__(self):
        self.id = Milter.uniqueID()
        self.mailfrom = None

    def envfrom(self, mailfrom, *params):
        self.mailfrom = mailfrom
        return Milter.CONTINUE

    def eom(self):
        self.addheader("X-Template", "seen")
        return Milter.CONTINUE
