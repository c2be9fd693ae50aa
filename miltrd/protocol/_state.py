"""The conversation's state machine: everything about order lives here.

Rules (shared by the filter side and the MTA side, which track the same
conversation; this module does not know which side it serves):

- OPTNEG comes first and once. MACRO is allowed at any time, even before
  OPTNEG. QUIT ends everything. QUIT_NC returns to "negotiated, awaiting
  CONNECT" and keeps the negotiation.
- CONNECT only right after negotiation. HELO and UNKNOWN between messages.
- A message runs MAIL, RCPT, DATA, HEADER, EOH, BODY, BODYEOB in that
  order; any step may be missing (the filter switched it off, the MTA's
  version lacks it, the message has no headers or no body). RCPT, HEADER
  and BODY repeat. BODYEOB or ABORT end the message.
- Like libmilter, a HELO or MAIL inside a message means the MTA abandoned
  it without saying so: the engine reports an implicit Abort first.
- A final reply of accept, discard, reject or tempfail (the last two except
  at RCPT) ends the message for this filter: the MTA sends no more of it.
"""

from __future__ import annotations

import contextlib
import enum
import functools

from ._constants import NO_REPLY_FLAG, Command, ProtocolFlag
from ._responses import (
    Accept,
    ConnectionFail,
    Continue,
    Discard,
    Reject,
    ReplyCode,
    Shutdown,
    Skip,
    TempFail,
)

__all__ = [
    "State",
    "IllegalTransition",
    "advance",
    "after_final_reply",
    "legal_finals",
    "finals_by_code",
    "why_illegal",
    "reply_expected",
    "REPLY_COMMANDS",
    "MESSAGE_STATES",
    "TRANSITIONS",
]


class State(enum.Enum):
    """Where a milter conversation is, for both sides; ERROR is final (every
    later call raises), CLOSED follows QUIT or a clean EOF."""

    # Members are singletons: identity hashing agrees with equality and
    # costs no Python call per lookup (the transition table is keyed by it).
    __hash__ = object.__hash__

    INIT = "init"  # waiting for OPTNEG
    NEGOTIATED = "negotiated"  # waiting for CONNECT (or whatever comes)
    SESSION = "session"  # connected, between messages
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    HEADERS = "headers"
    EOH = "eoh"
    BODY = "body"
    CLOSED = "closed"
    ERROR = "error"


class IllegalTransition(Exception):
    """Raised by advance(); each side turns it into its own error type."""


MESSAGE_STATES = frozenset(
    {State.MAIL, State.RCPT, State.DATA, State.HEADERS, State.EOH, State.BODY}
)
_RANK = {
    State.NEGOTIATED: 0,
    State.SESSION: 0,
    State.MAIL: 1,
    State.RCPT: 2,
    State.DATA: 3,
    State.HEADERS: 4,
    State.EOH: 5,
    State.BODY: 6,
}
_MESSAGE_COMMANDS: dict[int, tuple[int, State]] = {
    Command.MAIL: (1, State.MAIL),
    Command.RCPT: (2, State.RCPT),
    Command.DATA: (3, State.DATA),
    Command.HEADER: (4, State.HEADERS),
    Command.EOH: (5, State.EOH),
    Command.BODY: (6, State.BODY),
    Command.BODYEOB: (7, State.SESSION),
}
_REPEATABLE = frozenset({Command.RCPT, Command.HEADER, Command.BODY})

# Commands that get a reply unless their NR_* flag was negotiated.
REPLY_COMMANDS = frozenset(
    {
        Command.OPTNEG,
        Command.CONNECT,
        Command.HELO,
        Command.MAIL,
        Command.RCPT,
        Command.DATA,
        Command.HEADER,
        Command.EOH,
        Command.BODY,
        Command.BODYEOB,
        Command.UNKNOWN,
    }
)


def reply_expected(code: int, protocol: ProtocolFlag) -> bool:
    """Does command ``code`` get a reply, given the negotiated ``protocol``?"""
    return code in reply_codes(protocol)


@functools.lru_cache(maxsize=256)
def reply_codes(protocol: ProtocolFlag) -> frozenset[int]:
    """The command codes that get a reply under the negotiated ``protocol``.

    A side asks this once per negotiation and then tests membership per
    command: Flag arithmetic per packet costs more than the rest of the
    state machine together.
    """
    return frozenset(
        code
        for code in REPLY_COMMANDS
        if (flag := NO_REPLY_FLAG.get(code)) is None or flag not in protocol
    )


def advance(state: State, code: int) -> tuple[State, bool]:
    """Return (new state, implicit abort) for command ``code`` in ``state``.

    Raises IllegalTransition if the command cannot come now.
    """
    move = TRANSITIONS[state].get(code)
    if move is None:
        _advance(state, code)  # raises: every legal pair is in the table
        raise AssertionError(f"transition table lacks {state} {code}")  # pragma: no cover
    return move


def why_illegal(state: State, code: int) -> str:
    """Why command ``code`` cannot come in ``state`` (the message of the
    IllegalTransition that advance() raises for it)."""
    try:
        _advance(state, code)
    except IllegalTransition as exc:
        return str(exc)
    raise ValueError(f"{_name(code)} is legal in {state.value}")


def _advance(state: State, code: int) -> tuple[State, bool]:
    if state in (State.CLOSED, State.ERROR):
        raise IllegalTransition(f"{_name(code)} after the connection ended")
    if code == Command.MACRO:
        return state, False
    if code == Command.QUIT:
        return State.CLOSED, False
    if state is State.INIT:
        if code == Command.OPTNEG:
            return State.NEGOTIATED, False
        raise IllegalTransition(f"{_name(code)} before option negotiation")
    if code == Command.OPTNEG:
        raise IllegalTransition("a second option negotiation")
    if code == Command.QUIT_NC:
        return State.NEGOTIATED, False
    if code == Command.CONNECT:
        if state is State.NEGOTIATED:
            return State.SESSION, False
        raise IllegalTransition("CONNECT after the connection started")
    in_message = state in MESSAGE_STATES
    if code == Command.UNKNOWN:
        return state, False
    if code == Command.ABORT:
        return State.SESSION, False
    if code == Command.HELO:
        return State.SESSION, in_message
    entry = _MESSAGE_COMMANDS.get(code)
    if entry is None:
        raise IllegalTransition(f"unknown command {_name(code)}")
    rank, new = entry
    current = _RANK[state]
    if rank > current or (rank == current and code in _REPEATABLE):
        return new, False
    if code == Command.MAIL:  # a new message while one was open
        return new, True
    raise IllegalTransition(f"{_name(code)} out of order (in {state.value})")


_CONN_LEVEL: frozenset[type] = frozenset(
    {Continue, Accept, Reject, TempFail, ReplyCode, ConnectionFail, Shutdown}
)
_MSG_LEVEL: frozenset[type] = _CONN_LEVEL | {Discard}
_MSG_LEVEL_SKIP: frozenset[type] = _MSG_LEVEL | {Skip}


@functools.lru_cache(maxsize=1024)
def legal_finals(code: int, protocol: ProtocolFlag, *, lenient_skip: bool) -> frozenset[type]:
    """The final replies allowed to command ``code``.

    SKIP needs SMFIP_SKIP; libmilter documents it for body chunks, Postfix
    honours it for any repeated event (``lenient_skip``, the MTA side).
    """
    if code in (Command.CONNECT, Command.HELO):
        return _CONN_LEVEL
    if ProtocolFlag.SKIP in protocol and (
        code == Command.BODY or (lenient_skip and code in (Command.HEADER, Command.RCPT))
    ):
        return _MSG_LEVEL_SKIP
    return _MSG_LEVEL


@functools.lru_cache(maxsize=256)
def finals_by_code(protocol: ProtocolFlag, *, lenient_skip: bool) -> dict[int, frozenset[type]]:
    """``legal_finals`` of every command that gets a final reply but OPTNEG
    (which is answered by negotiation), in one table a side fetches once
    per negotiation. The dict is shared between callers: read it only.
    """
    return {
        int(code): legal_finals(code, protocol, lenient_skip=lenient_skip)
        for code in REPLY_COMMANDS
        if code != Command.OPTNEG
    }


def after_final_reply(state: State, code: int, reply: type) -> State:
    """The state after the final ``reply`` to command ``code``."""
    if state not in MESSAGE_STATES:
        return state
    if reply in (Accept, Discard):
        return State.SESSION
    if reply in (Reject, TempFail, ReplyCode) and code not in (Command.RCPT, Command.UNKNOWN):
        return State.SESSION
    return state


def _name(code: int) -> str:
    try:
        return Command(code).name
    except ValueError:
        return repr(bytes((code,)))


def _legal_moves(state: State) -> dict[int, tuple[State, bool]]:
    moves = {}
    for command in Command:
        with contextlib.suppress(IllegalTransition):
            moves[int(command)] = _advance(state, command)
    return moves


# The state machine is a pure function of a small domain: state -> command
# code -> (new state, implicit abort), every legal pair worked out at import.
# A side looks a packet up here (two dict lookups, no call); a code absent
# from its state's dict is illegal there, and advance() says why.
TRANSITIONS: dict[State, dict[int, tuple[State, bool]]] = {s: _legal_moves(s) for s in State}
