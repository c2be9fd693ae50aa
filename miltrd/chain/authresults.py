"""The chain's own Authentication-Results header (RFC 8601).

Plugins publish results with ``Message.publish_auth_result``; at end of
message the chain removes incoming Authentication-Results that claim this
site's authserv-id (RFC 8601 section 5) and writes every published result
into one header at the top of the message.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Set as AbstractSet

from ..api import (
    Change,
    Connection,
    HeaderChange,
    HeaderInsertion,
    Message,
    authserv_id_of,
    format_authentication_results,
)

__all__ = ["with_auth_results"]

log = logging.getLogger("miltrd.chain")


def with_auth_results(
    conn: Connection, msg: Message, changes: list[Change], observing: AbstractSet[str]
) -> list[Change]:
    """``changes`` with the forged Authentication-Results deleted before
    them and ours inserted at the top after them.

    Deletions go highest occurrence first, so no deletion moves the index
    of one still to come. Our header is inserted at index 0 after every
    plugin's changes, so it ends up above them all. Results published by
    plugins in ``observing`` (observe mode) are only logged.
    """
    authserv_id = (conn.internal_rules.authserv_id or conn.macro("j") or socket.getfqdn()).lower()
    # A deletion's index counts the fields as the MTA has them: as received,
    # not as earlier plugins' changes will leave them.
    forged: list[int] = []
    seen = 0
    for name, value in msg.received_headers:
        if name.lower() == "authentication-results":
            seen += 1
            if authserv_id_of(value) == authserv_id:
                forged.append(seen)
    if forged:
        log.info(
            "removing %d incoming Authentication-Results claiming %s", len(forged), authserv_id
        )
    out: list[Change] = [
        HeaderChange(index, "Authentication-Results", "") for index in reversed(forged)
    ]
    out.extend(changes)
    results = []
    for published in msg.auth_results:
        if published.plugin in observing:
            log.info("plugin %s (observe): would publish %s", published.plugin, published.render())
        else:
            results.append(published)
    values = format_authentication_results(authserv_id, results)
    out.extend(HeaderInsertion(0, "Authentication-Results", v) for v in reversed(values))
    return out
