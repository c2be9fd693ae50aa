"""Responses: what the filter sends to the MTA (SMFIR_*).

Frozen dataclasses, validated when built. ``encode_response`` gives the
packet; ``decode_response`` parses one (RemoteProtocolError if malformed).
Whether a response is *allowed now* is the connections' business, not this
module's.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._constants import (
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    ActionFlag,
    MacroStage,
    ProtocolFlag,
    Response,
)
from ._errors import LocalProtocolError, RemoteProtocolError
from ._framing import frame
from ._strings import check_text, from_wire, join_strings, split_strings

__all__ = [
    "Continue",
    "Accept",
    "Reject",
    "TempFail",
    "Discard",
    "Progress",
    "Skip",
    "ConnectionFail",
    "Shutdown",
    "ReplyCode",
    "AddHeader",
    "InsertHeader",
    "ChangeHeader",
    "AddRecipient",
    "AddRecipientPar",
    "DeleteRecipient",
    "ReplaceBody",
    "ChangeSender",
    "Quarantine",
    "OptionNegotiationReply",
    "FilterResponse",
    "FINAL_RESPONSES",
    "MODIFICATIONS",
    "RESPONSE_CODES",
    "ACTION_NEEDED",
    "decode_response",
    "encode_response",
    "FIXED_WIRE",
]

_U32 = struct.Struct("!I")
_U32X3 = struct.Struct("!III")


@dataclass(frozen=True, slots=True)
class Continue:
    """SMFIR_CONTINUE: go on; at end of message it means accept."""


@dataclass(frozen=True, slots=True)
class Accept:
    """SMFIR_ACCEPT: accept (the connection at CONNECT/HELO, else the message)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """SMFIR_REJECT: 5xx (at RCPT: this recipient only)."""


@dataclass(frozen=True, slots=True)
class TempFail:
    """SMFIR_TEMPFAIL: 4xx (at RCPT: this recipient only)."""


@dataclass(frozen=True, slots=True)
class Discard:
    """SMFIR_DISCARD: accept the message and silently drop it."""


@dataclass(frozen=True, slots=True)
class Progress:
    """SMFIR_PROGRESS: still working; the MTA restarts its timeout."""


@dataclass(frozen=True, slots=True)
class Skip:
    """SMFIR_SKIP: send no more events of this kind (body chunks)."""


@dataclass(frozen=True, slots=True)
class ConnectionFail:
    """SMFIR_CONN_FAIL: make the SMTP connection fail."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """SMFIR_SHUTDOWN: the MTA answers 421 and closes the SMTP session."""


_XCODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")
_REPLY_LINE = re.compile(r"([45]\d\d)(?:([ -])(.*))?\Z", re.S)


@dataclass(frozen=True, slots=True)
class ReplyCode:
    """SMFIR_REPLYCODE: a reject (5xx) or tempfail (4xx) with its own text.

    ``lines`` holds the text of each reply line as the SMTP client should
    read it; '%' is doubled on the wire (Sendmail and Postfix undo that).
    """

    code: int
    lines: tuple[str, ...]
    xcode: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.code, int) or not 400 <= self.code <= 599:
            raise LocalProtocolError(f"reply code {self.code!r} is not 4xx or 5xx")
        if self.xcode is not None:
            if not _XCODE.match(self.xcode):
                raise LocalProtocolError(f"enhanced status code {self.xcode!r} is malformed")
            if self.xcode[0] != str(self.code)[0]:
                raise LocalProtocolError(
                    f"enhanced status {self.xcode} does not match the class of {self.code}"
                )
        if not isinstance(self.lines, tuple) or not 1 <= len(self.lines) <= MAX_REPLY_LINES:
            raise LocalProtocolError(f"a reply has 1 to {MAX_REPLY_LINES} lines")
        for line in self.lines:
            check_text(line, "reply text")
            if "\r" in line or "\n" in line:
                raise LocalProtocolError("reply text line contains CR or LF")
            if len(line) > MAX_REPLY_LINE:
                raise LocalProtocolError(f"reply line longer than {MAX_REPLY_LINE} characters")

    @property
    def is_reject(self) -> bool:
        """True for a 5xx code, False for 4xx."""
        return self.code >= 500

    def to_text(self) -> str:
        """The reply as the MTA receives it (before its own '%%' handling)."""
        out = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            sep = "-" if i < last else " "
            body = " ".join(p for p in (self.xcode, line.replace("%", "%%")) if p)
            out.append(f"{self.code}{sep}{body}" if body or sep == "-" else str(self.code))
        return "\r\n".join(out)

    @classmethod
    def parse(cls, text: str) -> ReplyCode:
        """Parse the wire text; raises RemoteProtocolError if malformed."""
        raw_lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
        if len(raw_lines) > MAX_REPLY_LINES:
            raise RemoteProtocolError("REPLYCODE: too many lines")
        code: str | None = None
        lines: list[str] = []
        xcode: str | None = None
        for i, raw in enumerate(raw_lines):
            m = _REPLY_LINE.match(raw)
            if not m:
                raise RemoteProtocolError(f"REPLYCODE: malformed line {raw!r}")
            if code is None:
                code = m.group(1)
            elif m.group(1) != code:
                raise RemoteProtocolError("REPLYCODE: lines carry different codes")
            sep = m.group(2) or " "
            if (sep == "-") != (i < len(raw_lines) - 1):
                raise RemoteProtocolError("REPLYCODE: '-' must mark every line but the last")
            rest = m.group(3) or ""
            first, _, after = rest.partition(" ")
            if _XCODE.match(first) and first[0] == code[0]:
                if i == 0:
                    xcode = first
                if first == xcode:
                    rest = after
            lines.append(rest.replace("%%", "%"))
        assert code is not None
        try:
            return cls(int(code), tuple(lines), xcode)
        except LocalProtocolError as exc:
            raise RemoteProtocolError(f"REPLYCODE: {exc}") from None


def _check_header(name: str, value: str) -> None:
    check_text(name, "header name")
    check_text(value, "header value")
    if not name or any(c in name for c in ": \t\r\n"):
        raise LocalProtocolError(f"header name {name!r} is not a valid field name")


def _check_index(index: int) -> None:
    if not isinstance(index, int) or not 0 <= index <= 0xFFFFFFFF:
        raise LocalProtocolError(f"header index {index!r} is not a uint32")


@dataclass(frozen=True, slots=True)
class AddHeader:
    """SMFIR_ADDHEADER: append a header field."""

    name: str
    value: str

    def __post_init__(self) -> None:
        _check_header(self.name, self.value)


@dataclass(frozen=True, slots=True)
class InsertHeader:
    """SMFIR_INSHEADER: insert a header field at ``index`` (0 = top)."""

    index: int
    name: str
    value: str

    def __post_init__(self) -> None:
        _check_index(self.index)
        _check_header(self.name, self.value)


@dataclass(frozen=True, slots=True)
class ChangeHeader:
    """SMFIR_CHGHEADER: change the ``index``-th (1-based) field of that name.

    An empty value deletes the field.
    """

    index: int
    name: str
    value: str

    def __post_init__(self) -> None:
        _check_index(self.index)
        _check_header(self.name, self.value)


@dataclass(frozen=True, slots=True)
class AddRecipient:
    """SMFIR_ADDRCPT: add an envelope recipient."""

    recipient: str

    def __post_init__(self) -> None:
        check_text(self.recipient, "recipient")


@dataclass(frozen=True, slots=True)
class AddRecipientPar:
    """SMFIR_ADDRCPT_PAR (v6): add a recipient with ESMTP arguments."""

    recipient: str
    args: str = ""

    def __post_init__(self) -> None:
        check_text(self.recipient, "recipient")
        check_text(self.args, "ESMTP arguments")


@dataclass(frozen=True, slots=True)
class DeleteRecipient:
    """SMFIR_DELRCPT: remove a recipient (as the RCPT string, exactly)."""

    recipient: str

    def __post_init__(self) -> None:
        check_text(self.recipient, "recipient")


@dataclass(frozen=True, slots=True)
class ReplaceBody:
    """SMFIR_REPLBODY: (part of) the new body; consecutive ones concatenate.

    A filter connection splits a long body into packets no larger than the
    negotiated data size.
    """

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise LocalProtocolError("replacement body must be bytes")


@dataclass(frozen=True, slots=True)
class ChangeSender:
    """SMFIR_CHGFROM (v6): replace the envelope sender."""

    sender: str
    args: str | None = None

    def __post_init__(self) -> None:
        check_text(self.sender, "sender")
        if self.args is not None:
            check_text(self.args, "ESMTP arguments")


@dataclass(frozen=True, slots=True)
class Quarantine:
    """SMFIR_QUARANTINE: hold the message in the MTA's queue, with a reason."""

    reason: str

    def __post_init__(self) -> None:
        check_text(self.reason, "quarantine reason")


@dataclass(frozen=True, slots=True)
class OptionNegotiationReply:
    """The OPTNEG reply: version, actions and steps asked for, macro lists."""

    version: int
    actions: ActionFlag
    protocol: ProtocolFlag
    macros: Mapping[MacroStage, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("version", "actions", "protocol"):
            value = int(getattr(self, name))
            if not 0 <= value <= 0xFFFFFFFF:
                raise LocalProtocolError(f"OPTNEG reply {name} {value} is not a uint32")
        for stage, names in self.macros.items():
            if not isinstance(stage, MacroStage):
                raise LocalProtocolError(f"macro stage {stage!r} is not a MacroStage")
            for name in names:
                check_text(name, "macro name")
                if not name or " " in name:
                    raise LocalProtocolError(f"macro name {name!r} is empty or has a space")


FilterResponse = (
    Continue
    | Accept
    | Reject
    | TempFail
    | Discard
    | Progress
    | Skip
    | ConnectionFail
    | Shutdown
    | ReplyCode
    | AddHeader
    | InsertHeader
    | ChangeHeader
    | AddRecipient
    | AddRecipientPar
    | DeleteRecipient
    | ReplaceBody
    | ChangeSender
    | Quarantine
    | OptionNegotiationReply
)

RESPONSE_CODES: dict[type, Response] = {
    Continue: Response.CONTINUE,
    Accept: Response.ACCEPT,
    Reject: Response.REJECT,
    TempFail: Response.TEMPFAIL,
    Discard: Response.DISCARD,
    Progress: Response.PROGRESS,
    Skip: Response.SKIP,
    ConnectionFail: Response.CONN_FAIL,
    Shutdown: Response.SHUTDOWN,
    ReplyCode: Response.REPLYCODE,
    AddHeader: Response.ADDHEADER,
    InsertHeader: Response.INSHEADER,
    ChangeHeader: Response.CHGHEADER,
    AddRecipient: Response.ADDRCPT,
    AddRecipientPar: Response.ADDRCPT_PAR,
    DeleteRecipient: Response.DELRCPT,
    ReplaceBody: Response.REPLBODY,
    ChangeSender: Response.CHGFROM,
    Quarantine: Response.QUARANTINE,
    OptionNegotiationReply: Response.OPTNEG,
}

# Responses that answer the command (end the wait for a reply).
FINAL_RESPONSES: tuple[type, ...] = (
    Continue,
    Accept,
    Reject,
    TempFail,
    Discard,
    Skip,
    ConnectionFail,
    Shutdown,
    ReplyCode,
)
# Changes allowed only in reply to end of message, and the action each needs.
ACTION_NEEDED: dict[type, ActionFlag] = {
    AddHeader: ActionFlag.ADDHDRS,
    InsertHeader: ActionFlag.ADDHDRS,
    ChangeHeader: ActionFlag.CHGHDRS,
    AddRecipient: ActionFlag.ADDRCPT,
    AddRecipientPar: ActionFlag.ADDRCPT_PAR,
    DeleteRecipient: ActionFlag.DELRCPT,
    ReplaceBody: ActionFlag.CHGBODY,
    ChangeSender: ActionFlag.CHGFROM,
    Quarantine: ActionFlag.QUARANTINE,
}
MODIFICATIONS: tuple[type, ...] = tuple(ACTION_NEEDED)


# --- encoding -------------------------------------------------------------


def _encode_optneg(r: OptionNegotiationReply) -> bytes:
    data = _U32X3.pack(r.version, int(r.actions), int(r.protocol))
    for stage in sorted(r.macros):
        data += _U32.pack(stage) + join_strings(" ".join(r.macros[stage]))
    return data


def _z(text: str) -> bytes:
    """One NUL-terminated string (join_strings of one, without its loop)."""
    return text.encode("utf-8", "surrogateescape") + b"\0"


def _encode_chgfrom(r: ChangeSender) -> bytes:
    return _z(r.sender) if r.args is None else _z(r.sender) + _z(r.args)


# Response class -> its packet's data. Responses without data are absent:
# their whole packets are in FIXED_WIRE.
_DATA: dict[type, Callable[[Any], bytes]] = {
    ReplyCode: lambda r: _z(r.to_text()),
    AddHeader: lambda r: _z(r.name) + _z(r.value),
    InsertHeader: lambda r: _U32.pack(r.index) + _z(r.name) + _z(r.value),
    ChangeHeader: lambda r: _U32.pack(r.index) + _z(r.name) + _z(r.value),
    AddRecipient: lambda r: _z(r.recipient),
    DeleteRecipient: lambda r: _z(r.recipient),
    AddRecipientPar: lambda r: _z(r.recipient) + _z(r.args),
    ReplaceBody: lambda r: bytes(r.data),
    ChangeSender: _encode_chgfrom,
    Quarantine: lambda r: _z(r.reason),
    OptionNegotiationReply: _encode_optneg,
}

# The packets of the responses that carry no data: a reply is one lookup.
FIXED_WIRE: dict[type, bytes] = {
    kind: frame(code) for kind, code in RESPONSE_CODES.items() if kind not in _DATA
}


def encode_response(r: FilterResponse) -> bytes:
    """Return the packet for ``r``."""
    kind = type(r)
    wire = FIXED_WIRE.get(kind)
    if wire is not None:
        return wire
    return frame(RESPONSE_CODES[kind], _DATA[kind](r))


# --- decoding -------------------------------------------------------------


def _decode_optneg(data: bytes) -> OptionNegotiationReply:
    if len(data) < _U32X3.size:
        raise RemoteProtocolError(f"OPTNEG reply: {len(data)} bytes, need 12")
    version, actions, protocol = _U32X3.unpack_from(data)
    macros: dict[MacroStage, tuple[str, ...]] = {}
    pos = _U32X3.size
    while pos < len(data):
        if len(data) - pos < 4:
            raise RemoteProtocolError("OPTNEG reply: truncated macro stage")
        (stage,) = _U32.unpack_from(data, pos)
        end = data.find(b"\0", pos + 4)
        if end < 0:
            raise RemoteProtocolError("OPTNEG reply: macro list not NUL-terminated")
        try:
            mstage = MacroStage(stage)
        except ValueError:
            raise RemoteProtocolError(f"OPTNEG reply: unknown macro stage {stage}") from None
        macros[mstage] = tuple(from_wire(data[pos + 4 : end]).split())
        pos = end + 1
    try:
        return OptionNegotiationReply(version, ActionFlag(actions), ProtocolFlag(protocol), macros)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"OPTNEG reply: {exc}") from None


def _decode_indexed(data: bytes, what: str) -> tuple[int, str, str]:
    if len(data) < 4:
        raise RemoteProtocolError(f"{what}: missing index")
    (index,) = _U32.unpack_from(data)
    name, value = split_strings(data[4:], what, 2, 2)
    return index, name, value


def _decode_reply(data: bytes) -> ReplyCode:
    (text,) = split_strings(data, "REPLYCODE", 1, 1)
    return ReplyCode.parse(text)


def _chgfrom(data: bytes) -> ChangeSender:
    parts = split_strings(data, "CHGFROM", 1, 2)
    return ChangeSender(parts[0], parts[1] if len(parts) > 1 else None)


def _addrcpt_par(data: bytes) -> AddRecipientPar:
    # libmilter sends rcpt\0args\0; be lenient about a missing args field.
    parts = split_strings(data, "ADDRCPT_PAR", 1, 2)
    return AddRecipientPar(parts[0], parts[1] if len(parts) > 1 else "")


def _const(instance: FilterResponse) -> Callable[[bytes], FilterResponse]:
    return lambda data: instance


_DECODERS: dict[int, Callable[[bytes], FilterResponse]] = {
    Response.CONTINUE: _const(Continue()),
    Response.ACCEPT: _const(Accept()),
    Response.REJECT: _const(Reject()),
    Response.TEMPFAIL: _const(TempFail()),
    Response.DISCARD: _const(Discard()),
    Response.PROGRESS: _const(Progress()),
    Response.SKIP: _const(Skip()),
    Response.CONN_FAIL: _const(ConnectionFail()),
    Response.SHUTDOWN: _const(Shutdown()),
    Response.REPLYCODE: _decode_reply,
    Response.ADDHEADER: lambda d: AddHeader(*split_strings(d, "ADDHEADER", 2, 2)),
    Response.INSHEADER: lambda d: InsertHeader(*_decode_indexed(d, "INSHEADER")),
    Response.CHGHEADER: lambda d: ChangeHeader(*_decode_indexed(d, "CHGHEADER")),
    Response.ADDRCPT: lambda d: AddRecipient(*split_strings(d, "ADDRCPT", 1, 1)),
    Response.ADDRCPT_PAR: _addrcpt_par,
    Response.DELRCPT: lambda d: DeleteRecipient(*split_strings(d, "DELRCPT", 1, 1)),
    Response.REPLBODY: ReplaceBody,
    Response.CHGFROM: _chgfrom,
    Response.QUARANTINE: lambda d: Quarantine(*split_strings(d, "QUARANTINE", 1, 1)),
    Response.OPTNEG: _decode_optneg,
}


def decode_response(code: int, data: bytes) -> FilterResponse:
    """Decode one filter packet. Raises RemoteProtocolError if malformed."""
    decoder = _DECODERS.get(code)
    if decoder is None:
        raise RemoteProtocolError(f"unknown or unsupported response code {bytes((code,))!r}")
    try:
        return decoder(data)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(str(exc)) from None
