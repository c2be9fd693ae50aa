"""Option negotiation, both directions, as pure functions.

The filter's request is trimmed to what the MTA offered and what the
protocol version defines (libmilter drops NODATA/NOUNKNOWN silently, and
a no-reply flag the MTA lacks simply means a reply is still owed). The MTA
side checks the filter's reply the way Postfix does: a higher version, or
an action or step it did not offer, is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ._commands import OptionNegotiation
from ._constants import (
    ACTIONS_BY_VERSION,
    MAX_VERSION,
    MDS_1M,
    MDS_64K,
    MDS_256K,
    MIN_VERSION,
    PROTOCOL_BY_VERSION,
    ActionFlag,
    MacroStage,
    ProtocolFlag,
)
from ._errors import LocalProtocolError, RemoteProtocolError
from ._responses import OptionNegotiationReply

__all__ = ["Negotiated", "effective_offer", "build_reply", "check_reply", "data_size_of"]

_MDS_BITS = ProtocolFlag.MDS_256K | ProtocolFlag.MDS_1M


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What both sides agreed on."""

    version: int
    actions: ActionFlag
    protocol: ProtocolFlag
    data_size: int = MDS_64K
    macros: Mapping[MacroStage, tuple[str, ...]] = field(default_factory=dict)


def data_size_of(protocol: ProtocolFlag) -> int:
    """The largest data part the flags allow (MILTER_MDS_*)."""
    if ProtocolFlag.MDS_1M in protocol:
        return MDS_1M
    if ProtocolFlag.MDS_256K in protocol:
        return MDS_256K
    return MDS_64K


def effective_offer(offer: OptionNegotiation) -> tuple[int, ActionFlag, ProtocolFlag]:
    """The offer as libmilter reads it: 0 actions = V1, 0 steps = V1."""
    version = min(MAX_VERSION, offer.version)
    actions = offer.actions if offer.actions else ActionFlag(0x0F)
    protocol = offer.protocol if offer.protocol else ProtocolFlag(0x3F)
    return version, actions, protocol


def build_reply(
    offer: OptionNegotiation,
    *,
    actions: ActionFlag,
    protocol: ProtocolFlag,
    macros: Mapping[MacroStage, Iterable[str]] | None = None,
    version: int | None = None,
    max_data_size: int = MDS_64K,
) -> tuple[OptionNegotiationReply, Negotiated]:
    """Trim a filter's wishes to the offer; return the reply and the result.

    ``protocol`` should not carry MDS bits: the data size is chosen from
    what the MTA offers and ``max_data_size``. Raises LocalProtocolError for
    a version outside 2..6.
    """
    mta_version, mta_actions, mta_protocol = effective_offer(offer)
    if version is None:
        version = mta_version
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise LocalProtocolError(f"cannot negotiate protocol version {version}")
    version = min(version, mta_version)
    want_actions = ActionFlag(actions)
    if macros:
        want_actions |= ActionFlag.SETSYMLIST
    agreed_actions = want_actions & mta_actions & ACTIONS_BY_VERSION[version]
    agreed_protocol = (
        ProtocolFlag(protocol) & ~_MDS_BITS & mta_protocol & PROTOCOL_BY_VERSION[version]
    )
    if ProtocolFlag.MDS_1M in mta_protocol and max_data_size >= MDS_1M:
        agreed_protocol |= ProtocolFlag.MDS_1M
    elif ProtocolFlag.MDS_256K in mta_protocol and max_data_size >= MDS_256K:
        agreed_protocol |= ProtocolFlag.MDS_256K
    lists: dict[MacroStage, tuple[str, ...]] = {}
    if macros and ActionFlag.SETSYMLIST in agreed_actions:
        lists = {MacroStage(stage): tuple(names) for stage, names in macros.items()}
    reply = OptionNegotiationReply(version, agreed_actions, agreed_protocol, lists)
    return reply, Negotiated(
        version, agreed_actions, agreed_protocol, data_size_of(agreed_protocol), lists
    )


def check_reply(offer: OptionNegotiation, reply: OptionNegotiationReply) -> Negotiated:
    """Validate a filter's reply against our offer, as Postfix does.

    Raises RemoteProtocolError on a version above ours or below 2, or on
    actions or steps we did not offer.
    """
    if reply.version > offer.version:
        raise RemoteProtocolError(
            f"filter wants protocol version {reply.version}, MTA offered {offer.version}"
        )
    if reply.version < MIN_VERSION:
        raise RemoteProtocolError(f"filter protocol version {reply.version} is below 2")
    _, mta_actions, mta_protocol = effective_offer(offer)
    extra_actions = reply.actions & ~mta_actions
    if extra_actions:
        raise RemoteProtocolError(f"filter requests actions not offered: {extra_actions!r}")
    extra_steps = reply.protocol & ~mta_protocol
    if extra_steps:
        raise RemoteProtocolError(f"filter requests protocol flags not offered: {extra_steps!r}")
    return Negotiated(
        reply.version,
        reply.actions,
        reply.protocol,
        data_size_of(reply.protocol),
        dict(reply.macros),
    )
