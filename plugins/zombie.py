"""zombie: an internal client sending as a foreign domain is a compromised PC.

A client inside ``[internal]`` (by network, or authenticated when
``internal.authenticated`` is true) that gives a MAIL FROM whose domain is
not one of ``internal.domains`` is refused with a 5.7.1 reply naming the
client IP and the address, and logged with the tag ``ZOMBIE`` so it can be
grepped. The null sender (bounces) is allowed unless configured otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from miltrd.api import (
    DISCARD,
    Action,
    Message,
    OptionError,
    Plugin,
    Verdict,
    reject,
    tempfail,
)


@dataclass(frozen=True)
class ZombieOptions:
    action: Literal["reject", "tempfail", "discard", "quarantine"] = "reject"
    subdomains: bool = False  # sub.example.com counts as example.com
    allow_null_sender: bool = True
    allow_senders: list[str] = field(default_factory=list)  # exact addresses always allowed


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

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        conn = msg.conn
        if not conn.internal:
            return None
        if not sender:
            if self.options.allow_null_sender:
                return None
        elif sender.lower() in self._allowed or self.internal_rules.is_internal_domain(
            msg.sender_domain, subdomains=self.options.subdomains
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
