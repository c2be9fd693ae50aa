"""zombie: an internal client sending as a foreign domain is a compromised PC.

A client inside ``[internal]`` (by network, or authenticated when
``internal.authenticated`` is true) that gives a MAIL FROM whose domain is
not one of ``internal.domains`` is refused with a 5.7.1 reply naming the
client IP and the address, and logged with the tag ``ZOMBIE`` so it can be
grepped. The null sender (bounces) is allowed unless configured otherwise.

Mail this host submits itself is not a zombie's: a loopback client (the
MTA's own submissions, which Postfix hands to ``non_smtpd_milters`` as from
127.0.0.1, and Sendmail's submission agent) may send as this host's own
names, which MTAs put on locally submitted mail whatever
``internal.domains`` says (cron's ``root@host.example.com``): the MTA's
host name (the ``j`` macro: Postfix's myhostname, Sendmail's $j), this
machine's host name and fully qualified name, ``/etc/mailname`` (Debian's
myorigin) and ``localhost``. ``local_host_names = false`` judges such
mail like any other.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from miltrd.api import (
    DISCARD,
    Action,
    Connection,
    Message,
    OptionError,
    Plugin,
    Verdict,
    parse_ip,
    reject,
    tempfail,
)


@dataclass(frozen=True)
class ZombieOptions:
    action: Literal["reject", "tempfail", "discard", "quarantine"] = "reject"
    subdomains: bool = False  # sub.example.com counts as example.com
    allow_null_sender: bool = True
    allow_senders: list[str] = field(default_factory=list)  # exact addresses always allowed
    local_host_names: bool = True  # a loopback client may send as this host's own names


MAILNAME = "/etc/mailname"


def host_names() -> frozenset[str]:
    """This machine's own mail names, lower case: its host name, its fully
    qualified name, the name in ``MAILNAME`` (if readable) and localhost."""
    names = {"localhost", socket.gethostname(), socket.getfqdn()}
    with contextlib.suppress(OSError, UnicodeDecodeError):
        names.add(Path(MAILNAME).read_text(encoding="ascii").strip())
    return frozenset(n.lower().rstrip(".") for n in names if n)


class Zombie(Plugin):
    Options = ZombieOptions
    actions = Action.QUARANTINE

    def __init__(self, options: ZombieOptions, **kw: Any) -> None:
        super().__init__(options, **kw)
        if not self.internal_rules.domains:
            raise OptionError(
                "internal.domains",
                f"lists no domain, but plugin {self.name} needs the site's own domains to know what is ours",
                outside=True,
            )
        self._allowed = {a.lower() for a in options.allow_senders}
        self._host_names = host_names() if options.local_host_names else frozenset()

    def describe(self) -> list[str]:
        if not self.options.local_host_names:
            return []
        names = ", ".join(sorted(self._host_names))
        return [f"loopback clients may also send as this host's names: $j, {names}"]

    def _local_host_name(self, conn: Connection, domain: str) -> bool:
        """A loopback client sending as one of this host's names, or the
        name the MTA calls itself (``j``)."""
        if not self.options.local_host_names:
            return False
        ip = parse_ip(conn.address)
        if ip is None or not ip.is_loopback:
            return False
        domain = domain.lower().rstrip(".")
        return domain in self._host_names or domain == conn.macro("j").lower().rstrip(".")

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        conn = msg.conn
        if not conn.internal:
            return None
        if not sender:
            if self.options.allow_null_sender:
                return None
        elif (
            sender.lower() in self._allowed
            or self.internal_rules.is_internal_domain(
                msg.sender_domain, subdomains=self.options.subdomains
            )
            or self._local_host_name(conn, msg.sender_domain)
        ):
            return None
        shown = f"<{sender}>"
        how = "authenticated as " + conn.auth_user if conn.authenticated else "internal network"
        self.log.warning(
            "ZOMBIE client=%s[%s] (%s) sender=%s: not one of our domains",
            conn.hostname,
            conn.address,
            how,
            shown,
        )
        text = f"Client {conn.address} may not send as {shown}: not one of our domains"
        match self.options.action:
            case "tempfail":
                return tempfail(text, code=451, xcode="4.7.1", reason="zombie")
            case "discard":
                return DISCARD
            case "quarantine":
                msg.quarantine(f"zombie: {conn.address} sent as {shown}")
                return None
        return reject(text, code=550, xcode="5.7.1", reason="zombie")


PLUGIN = Zombie
