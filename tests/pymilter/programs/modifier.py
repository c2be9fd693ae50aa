"""A pymilter program (written for C pymilter; runs unchanged on miltrd).

It adds a header, refuses one recipient with a multi-line reply, changes
the sender and replaces the body. Usage: modifier.py SOCKET
"""

import sys

import Milter


class Modifier(Milter.Base):
    def __init__(self):
        self.id = Milter.uniqueID()
        self.sender = None
        self.subject = ""
        self.client = None

    @Milter.noreply
    def connect(self, hostname, family, hostaddr):
        self.client = hostaddr
        return Milter.CONTINUE

    def envfrom(self, mailfrom, *params):
        self.sender = mailfrom
        self.subject = ""
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        if to.lower().startswith("<blocked@"):
            self.setreply(
                "550",
                "5.7.1",
                "Recipient refused by the modifier",
                "See postmaster@example.org",
                "100%% sure",
            )
            return Milter.REJECT
        return Milter.CONTINUE

    def header(self, name, value):
        if name.lower() == "subject":
            self.subject = value
        return Milter.CONTINUE

    def eom(self):
        self.addheader("X-Pymilter", f"seen {self.sender} ({self.subject})")
        self.chgfrom("<bounces@example.net>")
        self.replacebody(b"Replaced by the modifier.\r\n")
        self.replacebody(b"Second chunk.\r\n")
        return Milter.CONTINUE


if __name__ == "__main__":
    Milter.factory = Modifier
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGFROM | Milter.CHGBODY)
    Milter.runmilter("modifier", sys.argv[1], 60)
