"""Where each plugin applies: its ``when`` table, judged message by message.

A plugin whose ``when`` fails is left out for the rest of the message (and
named ``not-applied`` in the summary, with the reason). At RCPT a failing
recipient condition leaves the plugin out for that recipient only: the
next recipient may match.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..api import Connection, Message, parse_ip
from ..config.when import NO_RECIPIENT_MATCHES, Facts, check_when
from .runtime import LoadedPlugin

__all__ = ["Applicability", "facts_of"]

log = logging.getLogger("miltrd.chain")


def facts_of(conn: Connection, msg: Message | None, recipient: str | None) -> Facts:
    """What ``when`` may be judged on so far: None where not known yet.

    At RCPT (``recipient`` given) the recipient being asked about decides
    the recipient conditions; later, any accepted recipient.
    """
    accepted = list(msg.recipients) if msg is not None else []
    everyone = accepted + ([recipient] if recipient else [])
    # For an internal client the direction waits for the recipients.
    known = everyone or not conn.internal
    return Facts(
        client_ip=parse_ip(conn.address),
        authenticated=conn.authenticated,
        direction=conn.direction_for(everyone) if known else None,
        sender=msg.sender if msg is not None else None,
        recipients=[recipient] if recipient is not None else (accepted or None),
        macros=dict(conn.macros),
    )


class Applicability:
    """The ``when`` judgements of one connection's current message."""

    def __init__(self, conditional: Sequence[LoadedPlugin]) -> None:
        # The plugins with a ``when`` table, in chain order (Runtime.conditional:
        # worked out once per runtime, not at every connection).
        self.conditional = conditional
        self.excluded: dict[str, str] = {}  # plugin -> why its `when` failed

    def new_message(self) -> None:
        self.excluded = {}

    def judge(
        self, conn: Connection, msg: Message | None, recipient: str | None
    ) -> tuple[set[str], set[str]]:
        """(plugins left out from now on for this message, plugins left out
        for this recipient only)."""
        excluded: set[str] = set()
        skip: set[str] = set()
        facts: Facts | None = None
        for p in self.conditional:
            when = p.entry.when
            if when is None or p.name in self.excluded:
                continue
            facts = facts or facts_of(conn, msg, recipient)
            ok, why = check_when(when, facts)
            if ok is not False:
                continue
            if recipient is not None and why == NO_RECIPIENT_MATCHES:
                skip.add(p.name)  # not for this recipient; maybe for the next
                continue
            log.info("plugin %s not applied: %s", p.name, why)
            self.excluded[p.name] = why
            excluded.add(p.name)
        return excluded, skip
