"""The one translator between the chain's words and the milter wire (pure).

Everything that turns the plugin API's vocabulary into protocol terms, or
back, lives here and nowhere else:

- declarations -> negotiation (``request_for``): a phase no plugin observes
  is switched off (SMFIP_NO*); a phase observed but decided by no plugin is
  made reply-less (SMFIP_NR_*), which saves a round trip per event; SKIP is
  always asked for (``body_reply`` uses it); UNKNOWN commands are never
  asked for; actions are the union of the declared ``api.Action`` flags;
  macro lists are the chain's own plus every plugin's;
- negotiation -> phases without a reply (``no_reply_phases``), which the
  chain needs to hold a verdict it cannot send yet;
- verdict -> reply (``reply_of``), including "DISCARD is not an answer to
  CONNECT or HELO" (libmilter turns it into a tempfail there too);
- change -> response (``change_response``) and the end-of-message answer
  (``eom_responses``); which action flag a response needs is the protocol's
  own fact (``ACTION_NEEDED``), not restated here;
- the client's address family (``family_name``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ..api import (
    Action,
    BodyReplacement,
    Change,
    HeaderAddition,
    HeaderChange,
    HeaderInsertion,
    Phase,
    Quarantining,
    RecipientAddition,
    RecipientDeletion,
    SenderChange,
    SmtpReply,
    Verdict,
    VerdictKind,
)
from ..chain import Declared
from ..protocol import (
    ACTION_NEEDED,
    Accept,
    ActionFlag,
    AddHeader,
    AddRecipient,
    AddRecipientPar,
    ChangeHeader,
    ChangeSender,
    Command,
    Continue,
    DeleteRecipient,
    Discard,
    Family,
    FilterResponse,
    InsertHeader,
    MacroStage,
    ProtocolFlag,
    Quarantine,
    Reject,
    ReplaceBody,
    ReplyCode,
    Skip,
    TempFail,
)

__all__ = [
    "ACTION_BITS",
    "MACRO_STAGES",
    "STEP_FLAGS",
    "Request",
    "body_reply",
    "change_response",
    "eom_responses",
    "family_name",
    "no_reply_phases",
    "reply_of",
    "request_for",
    "uses_smtputf8",
]

log = logging.getLogger("miltrd.server")

# Phase -> (flag that switches the step off, flag that makes it reply-less).
STEP_FLAGS: dict[Phase, tuple[ProtocolFlag, ProtocolFlag]] = {
    Phase.CONNECT: (ProtocolFlag.NOCONNECT, ProtocolFlag.NR_CONN),
    Phase.HELO: (ProtocolFlag.NOHELO, ProtocolFlag.NR_HELO),
    Phase.MAIL: (ProtocolFlag.NOMAIL, ProtocolFlag.NR_MAIL),
    Phase.RCPT: (ProtocolFlag.NORCPT, ProtocolFlag.NR_RCPT),
    Phase.DATA: (ProtocolFlag.NODATA, ProtocolFlag.NR_DATA),
    Phase.HEADER: (ProtocolFlag.NOHDRS, ProtocolFlag.NR_HDR),
    Phase.EOH: (ProtocolFlag.NOEOH, ProtocolFlag.NR_EOH),
    Phase.BODY: (ProtocolFlag.NOBODY, ProtocolFlag.NR_BODY),
}
# A plugin's declared Action -> the action flags negotiated for it. Adding
# recipients asks for both forms: with ESMTP arguments (ADDRCPT_PAR) or not.
ACTION_BITS: dict[Action, ActionFlag] = {
    Action.ADD_HEADERS: ActionFlag.ADDHDRS,
    Action.CHANGE_HEADERS: ActionFlag.CHGHDRS,
    Action.ADD_RECIPIENTS: ActionFlag.ADDRCPT | ActionFlag.ADDRCPT_PAR,
    Action.DELETE_RECIPIENTS: ActionFlag.DELRCPT,
    Action.CHANGE_SENDER: ActionFlag.CHGFROM,
    Action.REPLACE_BODY: ActionFlag.CHGBODY,
    Action.QUARANTINE: ActionFlag.QUARANTINE,
    # The chain adds its Authentication-Results header and deletes forged ones.
    Action.AUTH_RESULTS: ActionFlag.ADDHDRS | ActionFlag.CHGHDRS,
}
MACRO_STAGES: dict[Phase, MacroStage] = {
    Phase.CONNECT: MacroStage.CONNECT,
    Phase.HELO: MacroStage.HELO,
    Phase.MAIL: MacroStage.ENVFROM,
    Phase.RCPT: MacroStage.ENVRCPT,
    Phase.DATA: MacroStage.DATA,
    Phase.EOH: MacroStage.EOH,
    Phase.EOM: MacroStage.EOM,
}
_FAMILIES = {
    Family.INET: "inet",
    Family.INET6: "inet6",
    Family.UNIX: "unix",
    Family.UNKNOWN: "unknown",
}


@dataclass(frozen=True)
class Request:
    """What to ask of the MTA in option negotiation (SMFIC_OPTNEG's reply)."""

    actions: ActionFlag
    protocol: ProtocolFlag
    macros: Mapping[MacroStage, tuple[str, ...]]


# request_for is asked at every MTA connection; a chain's declarations
# change only with a reload, so each Declared is worked out once.
_requests: dict[int, tuple[Declared, Request]] = {}


def request_for(declared: Declared) -> Request:
    """The negotiation request for a chain's joined declarations."""
    hit = _requests.get(id(declared))
    if hit is not None and hit[0] is declared:
        return hit[1]
    if len(_requests) > 16:  # only reloads add entries; keep the last few
        _requests.clear()
    request = _request_for(declared)
    _requests[id(declared)] = (declared, request)
    return request


def _request_for(declared: Declared) -> Request:
    protocol = ProtocolFlag.NOUNKNOWN | ProtocolFlag.NR_UNKN
    for phase, (off, no_reply) in STEP_FLAGS.items():
        if not phase & declared.observes:
            protocol |= off
        elif not phase & declared.decides:
            protocol |= no_reply
    # SKIP whenever body chunks may come with a reply owed: when the body is
    # decided on, but also when it is not observed (an MTA that offers SKIP
    # but not NOBODY still sends it) or observed without a decision (an MTA
    # without NR_BODY still waits for each chunk's reply). The first chunk
    # nobody wants is then answered SKIP, and the MTA sends no more.
    protocol |= ProtocolFlag.SKIP
    actions = ActionFlag.NONE
    for action, bits in ACTION_BITS.items():
        if action & declared.actions:
            actions |= bits
    macros = {
        MACRO_STAGES[phase]: tuple(sorted(names))
        for phase, names in declared.macros.items()
        if phase in MACRO_STAGES and names
    }
    return Request(actions, protocol, dict(sorted(macros.items())))


# Read at every reply, bound once: on Python 3.11 an Enum member read from
# its class, and a Flag's ``in``, are calls into Python.
_CONTINUE_KIND = VerdictKind.CONTINUE
_ACCEPT_KIND = VerdictKind.ACCEPT
_BODY = Command.BODY
_BODYEOB = Command.BODYEOB
_SKIP_BIT = int(ProtocolFlag.SKIP)
_CONTINUE = Continue()  # immutable: one for every reply


def body_reply(
    verdict: Verdict, protocol: ProtocolFlag, wanted: bool, *, smtputf8: bool = False
) -> FilterResponse:
    """The reply to a body chunk: SKIP when the chain says continue, no
    plugin still in the game wants more of the body, and SKIP was agreed;
    otherwise the verdict's reply."""
    if verdict.kind is _CONTINUE_KIND and not wanted and int(protocol) & _SKIP_BIT:
        return Skip()
    return reply_of(verdict, _BODY, smtputf8=smtputf8)


@functools.lru_cache(maxsize=64)
def no_reply_phases(protocol: ProtocolFlag) -> Phase:
    """The phases whose events the MTA sends without waiting for a reply,
    given the negotiated protocol flags."""
    phases = Phase.NONE
    for phase, (_off, no_reply) in STEP_FLAGS.items():
        if no_reply & protocol:
            phases |= phase
    return phases


def family_name(family: Family) -> str:
    """``Connection.family`` for a protocol address family."""
    return _FAMILIES[family]


def reply_of(
    verdict: Verdict, command: Command | None = None, *, smtputf8: bool = False
) -> FilterResponse:
    """The protocol response for a chain verdict, in reply to ``command``.

    A REJECT or TEMPFAIL with an SMTP reply becomes SMFIR_REPLYCODE, its
    text printable ASCII unless the client gave SMTPUTF8 for this message
    (``SmtpReply.wire_lines``). DISCARD is not a valid answer to CONNECT or
    HELO, so it becomes a tempfail there.
    """
    kind = verdict.kind
    if kind is _CONTINUE_KIND:
        return _CONTINUE
    if kind is _ACCEPT_KIND:
        return Accept()
    if kind is VerdictKind.DISCARD:
        return TempFail() if command in (Command.CONNECT, Command.HELO) else Discard()
    if verdict.reply is not None:
        return _reply_code(verdict.reply, smtputf8)
    return Reject() if kind is VerdictKind.REJECT else TempFail()


def _reply_code(reply: SmtpReply, smtputf8: bool) -> ReplyCode:
    return ReplyCode(reply.code, reply.wire_lines(smtputf8=smtputf8), reply.xcode)


def uses_smtputf8(esmtp_args: Iterable[str]) -> bool:
    """Did MAIL FROM carry the SMTPUTF8 parameter (RFC 6531)?"""
    if not esmtp_args:  # the usual case, without a generator
        return False
    return any(arg.upper() == "SMTPUTF8" for arg in esmtp_args)


def change_response(change: Change) -> FilterResponse:
    """The modification response (SMFIR_ADDHEADER etc.) for a plugin's change.

    Recipients and senders go out in angle brackets, as the MTA expects
    them; a recipient deletion carries the address as the MTA gave it.
    """
    match change:
        case HeaderAddition():
            return AddHeader(change.name, change.value)
        case HeaderInsertion():
            return InsertHeader(change.index, change.name, change.value)
        case HeaderChange():
            return ChangeHeader(change.index, change.name, change.value)
        case RecipientAddition():
            if change.esmtp_args:
                return AddRecipientPar(f"<{change.address}>", change.esmtp_args)
            return AddRecipient(f"<{change.address}>")
        case RecipientDeletion():
            return DeleteRecipient(change.address)
        case SenderChange():
            return ChangeSender(f"<{change.address}>", change.esmtp_args)
        case BodyReplacement():
            return ReplaceBody(change.read())
        case Quarantining():
            return Quarantine(change.reason)
    raise TypeError(f"not a change: {change!r}")


def eom_responses(
    verdict: Verdict,
    changes: Iterable[Change],
    actions: ActionFlag,
    piece: int = 65535,
    *,
    smtputf8: bool = False,
) -> Iterator[FilterResponse]:
    """Everything sent in reply to end of message: the changes in chain
    order, then the final reply.

    A change whose action the MTA did not grant is logged and dropped. The
    replacement body goes last, and only the last plugin's (Postfix wants
    one contiguous run, and a later replacement supersedes an earlier one);
    it is read a ``piece`` of bytes at a time as the responses are taken,
    so a large one is never held in memory whole.
    """
    body: BodyReplacement | None = None
    for change in changes:
        # The body's response is made later, a piece at a time.
        response = None if isinstance(change, BodyReplacement) else change_response(change)
        needed = ACTION_NEEDED[ReplaceBody if response is None else type(response)]
        if int(needed) & ~int(actions):  # as ints: a Flag's ``in`` is a call into Python
            log.error("the MTA did not allow %s; dropped %s", needed.name, change)
            continue
        if isinstance(change, BodyReplacement):
            body = change
        elif response is not None:
            yield response
    if body is not None:
        if body.size == 0:
            yield ReplaceBody(b"")
        for data in body.chunks(piece):
            yield ReplaceBody(data)
    yield reply_of(verdict, _BODYEOB, smtputf8=smtputf8)
