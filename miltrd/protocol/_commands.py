"""Commands: what the MTA sends to the filter (SMFIC_*).

Each command is a frozen dataclass. ``decode_command`` turns a packet's
code and data into one (raising RemoteProtocolError on anything malformed);
``encode_command`` turns one into a packet (raising LocalProtocolError if it
cannot be sent). Constructors validate, so an invalid command cannot exist.
The decoder builds its commands without running that validation again: a
string cut at a NUL and decoded with surrogateescape cannot hold a NUL and
always encodes back, so what it builds is exactly what the constructor
would build (tests/protocol/test_properties.py holds it to that).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ._constants import MIN_VERSION, ActionFlag, Command, Family, ProtocolFlag
from ._errors import LocalProtocolError, RemoteProtocolError
from ._framing import frame
from ._strings import check_text, from_wire, join_strings, read_strings

__all__ = [
    "OptionNegotiation",
    "DefineMacros",
    "Connect",
    "Helo",
    "MailFrom",
    "RcptTo",
    "Data",
    "Header",
    "EndOfHeaders",
    "BodyChunk",
    "EndOfMessage",
    "Abort",
    "Quit",
    "QuitNewConnection",
    "Unknown",
    "MtaCommand",
    "decode_command",
    "encode_command",
    "COMMAND_CODES",
]

_U32X3 = struct.Struct("!III")
_U16 = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class OptionNegotiation:
    """SMFIC_OPTNEG: the MTA's offer: protocol version, actions, steps."""

    version: int
    actions: ActionFlag
    protocol: ProtocolFlag

    def __post_init__(self) -> None:
        for name in ("version", "actions", "protocol"):
            value = getattr(self, name)
            if not 0 <= int(value) <= 0xFFFFFFFF:
                raise LocalProtocolError(f"OPTNEG {name} {value} is not a uint32")


@dataclass(frozen=True, slots=True)
class DefineMacros:
    """SMFIC_MACRO: macro values for the command whose code is ``command``."""

    command: int
    macros: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.command <= 255:
            raise LocalProtocolError("macro command code must be one byte")
        for name, value in self.macros.items():
            check_text(name, "macro name")
            check_text(value, f"macro {name} value")
            if not name:
                raise LocalProtocolError("empty macro name")


@dataclass(frozen=True, slots=True)
class Connect:
    """SMFIC_CONNECT: the SMTP client's host name, family, port, address."""

    hostname: str
    family: Family = Family.UNKNOWN
    port: int | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        check_text(self.hostname, "connect hostname")
        if self.family is Family.UNKNOWN:
            if self.port is not None or self.address is not None:
                raise LocalProtocolError("family U carries no port and no address")
        else:
            if self.port is None or not 0 <= self.port <= 0xFFFF:
                raise LocalProtocolError(f"connect port {self.port!r} is not a uint16")
            if self.address is None:
                raise LocalProtocolError("connect address missing")
            check_text(self.address, "connect address")


@dataclass(frozen=True, slots=True)
class Helo:
    """SMFIC_HELO: the HELO/EHLO argument."""

    name: str

    def __post_init__(self) -> None:
        check_text(self.name, "helo name")


@dataclass(frozen=True, slots=True)
class MailFrom:
    """SMFIC_MAIL: the sender as given (with <>), then ESMTP arguments."""

    sender: str
    args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_text(self.sender, "sender")
        for arg in self.args:
            check_text(arg, "ESMTP argument")


@dataclass(frozen=True, slots=True)
class RcptTo:
    """SMFIC_RCPT: one recipient as given (with <>), then ESMTP arguments."""

    recipient: str
    args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_text(self.recipient, "recipient")
        for arg in self.args:
            check_text(arg, "ESMTP argument")


@dataclass(frozen=True, slots=True)
class Data:
    """SMFIC_DATA (v4+): the client sent DATA."""


@dataclass(frozen=True, slots=True)
class Header:
    """SMFIC_HEADER: one header field, name and (unfolded as sent) value."""

    name: str
    value: str

    def __post_init__(self) -> None:
        check_text(self.name, "header name")
        check_text(self.value, "header value")


@dataclass(frozen=True, slots=True)
class EndOfHeaders:
    """SMFIC_EOH."""


@dataclass(frozen=True, slots=True)
class BodyChunk:
    """SMFIC_BODY: a piece of the raw body (CRLF line ends)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """SMFIC_BODYEOB: end of message; some MTAs put a last chunk in it."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Abort:
    """SMFIC_ABORT: the current message is abandoned (RSET, rejection)."""

    implicit: bool = False  # True when the engine inferred it from the order


@dataclass(frozen=True, slots=True)
class Quit:
    """SMFIC_QUIT: the MTA closes the connection."""


@dataclass(frozen=True, slots=True)
class QuitNewConnection:
    """SMFIC_QUIT_NC: a new SMTP connection follows on this one (v6)."""


@dataclass(frozen=True, slots=True)
class Unknown:
    """SMFIC_UNKNOWN (v3+): an SMTP command the MTA did not recognise."""

    line: str

    def __post_init__(self) -> None:
        check_text(self.line, "unknown command")


MtaCommand = (
    OptionNegotiation
    | DefineMacros
    | Connect
    | Helo
    | MailFrom
    | RcptTo
    | Data
    | Header
    | EndOfHeaders
    | BodyChunk
    | EndOfMessage
    | Abort
    | Quit
    | QuitNewConnection
    | Unknown
)

COMMAND_CODES: dict[type, Command] = {
    OptionNegotiation: Command.OPTNEG,
    DefineMacros: Command.MACRO,
    Connect: Command.CONNECT,
    Helo: Command.HELO,
    MailFrom: Command.MAIL,
    RcptTo: Command.RCPT,
    Data: Command.DATA,
    Header: Command.HEADER,
    EndOfHeaders: Command.EOH,
    BodyChunk: Command.BODY,
    EndOfMessage: Command.BODYEOB,
    Abort: Command.ABORT,
    Quit: Command.QUIT,
    QuitNewConnection: Command.QUIT_NC,
    Unknown: Command.UNKNOWN,
}


# --- decoding -------------------------------------------------------------

# The decoder's own constructors: they set the slots directly and skip
# __post_init__. Every value they get is valid by construction (see the
# module docstring); the checks cost more than the rest of decoding a
# packet, and Postfix sends several packets per SMTP command.
_new = object.__new__


def _setter(cls: type, name: str) -> Callable[[object, object], None]:
    setter: Callable[[object, object], None] = getattr(cls, name).__set__
    return setter


_optneg_version = _setter(OptionNegotiation, "version")
_optneg_actions = _setter(OptionNegotiation, "actions")
_optneg_protocol = _setter(OptionNegotiation, "protocol")
_macro_command = _setter(DefineMacros, "command")
_macro_macros = _setter(DefineMacros, "macros")
_connect_hostname = _setter(Connect, "hostname")
_connect_family = _setter(Connect, "family")
_connect_port = _setter(Connect, "port")
_connect_address = _setter(Connect, "address")
_helo_name = _setter(Helo, "name")
_mail_sender = _setter(MailFrom, "sender")
_mail_args = _setter(MailFrom, "args")
_rcpt_recipient = _setter(RcptTo, "recipient")
_rcpt_args = _setter(RcptTo, "args")
_header_name = _setter(Header, "name")
_header_value = _setter(Header, "value")
_unknown_line = _setter(Unknown, "line")
_body_data = _setter(BodyChunk, "data")
_eom_data = _setter(EndOfMessage, "data")


def _new_connect(
    hostname: str,
    family: Family = Family.UNKNOWN,
    port: int | None = None,
    address: str | None = None,
) -> Connect:
    cmd: Connect = _new(Connect)
    _connect_hostname(cmd, hostname)
    _connect_family(cmd, family)
    _connect_port(cmd, port)
    _connect_address(cmd, address)
    return cmd


# An MTA makes the same offer on every connection: the command for each
# offer (immutable: ints and flags) is built once and shared.
_OFFERS: dict[bytes, OptionNegotiation] = {}


def _optneg(data: bytes) -> OptionNegotiation:
    # libmilter reads the first 12 bytes and ignores anything after them.
    raw = data[:12]
    cmd = _OFFERS.get(raw)
    if cmd is not None:
        return cmd
    if len(data) < _U32X3.size:
        raise RemoteProtocolError(f"OPTNEG: {len(data)} bytes, need 12")
    version, actions, protocol = _U32X3.unpack_from(data)
    if version < MIN_VERSION:
        raise RemoteProtocolError(f"OPTNEG: MTA protocol version {version} is below 2")
    cmd = _new(OptionNegotiation)
    _optneg_version(cmd, version)
    _optneg_actions(cmd, ActionFlag(actions))
    _optneg_protocol(cmd, ProtocolFlag(protocol))
    if len(_OFFERS) >= 64:
        _OFFERS.clear()
    _OFFERS[raw] = cmd
    return cmd


def _macro(data: bytes) -> DefineMacros:
    # libmilter ignores a MACRO packet it cannot read; we keep what can be
    # read: a name without a value, or with an empty name, is dropped.
    cmd: DefineMacros = _new(DefineMacros)
    if not data:
        _macro_command(cmd, 0)
        _macro_macros(cmd, {})
        return cmd
    _macro_command(cmd, data[0])
    # Pairs in order, a later name overriding an earlier one; an odd last
    # string (a name without a value) is left out by zip.
    pairs = iter(_argv(data[1:]))
    macros = dict(zip(pairs, pairs))  # noqa: B905 (one iterator, read in pairs)
    macros.pop("", None)
    _macro_macros(cmd, macros)
    return cmd


# Family(chr(byte)) is a call into Python (Enum's __call__ and __new__) at
# every connection: a table instead.
_FAMILY_BY_BYTE: dict[int, Family] = {ord(f.value): f for f in Family}
_UNKNOWN_FAMILY = Family.UNKNOWN


def _connect(data: bytes) -> Connect:
    # What cannot be read as a family, port and address becomes family
    # UNKNOWN: the client is then judged as one whose address is unknown,
    # and the connection goes on (libmilter would close it).
    nul = data.find(b"\0")
    if nul < 0:
        return _new_connect(from_wire(data))
    hostname = from_wire(data[:nul])
    rest = data[nul + 1 :]
    family = _FAMILY_BY_BYTE.get(rest[0], _UNKNOWN_FAMILY) if rest else _UNKNOWN_FAMILY
    if family is _UNKNOWN_FAMILY or len(rest) < 3:
        return _new_connect(hostname)
    (port,) = _U16.unpack_from(rest, 1)
    (address,) = read_strings(rest[3:], 1)
    return _new_connect(hostname, family, port, address)


def _empty(cls: type) -> Callable[[bytes], MtaCommand]:
    # libmilter ignores data after commands that carry none; so do we.
    instance = cls()
    return lambda data: instance


# The decoders below read a packet's strings as read_strings() does, but
# decode the packet's bytes in one call and split the text at its NULs: a
# NUL is never part of a UTF-8 sequence, so surrogateescape decodes each
# string the same whether alone or among the others, and a str cannot fail
# to decode this way (tests/protocol/test_fast_paths.py holds them to
# read_strings).


def _helo(data: bytes) -> Helo:
    cmd: Helo = _new(Helo)
    _helo_name(cmd, data.decode("utf-8", "surrogateescape").split("\0", 1)[0])
    return cmd


def _unknown(data: bytes) -> Unknown:
    cmd: Unknown = _new(Unknown)
    _unknown_line(cmd, data.decode("utf-8", "surrogateescape").split("\0", 1)[0])
    return cmd


def _header(data: bytes) -> Header:
    # libmilter hands the value to the filter as a C string: it ends at its
    # first NUL, and whatever follows is ignored, not a reason to close.
    parts = data.decode("utf-8", "surrogateescape").split("\0", 2)
    cmd: Header = _new(Header)
    _header_name(cmd, parts[0])
    _header_value(cmd, parts[1] if len(parts) > 1 else "")
    return cmd


def _argv(data: bytes) -> list[str]:
    argv = data.decode("utf-8", "surrogateescape").split("\0")
    if not argv[-1] and len(argv) > 1:
        del argv[-1]  # the terminator of the last string, not an empty string
    return argv


def _mail(data: bytes) -> MailFrom:
    argv = _argv(data)
    cmd: MailFrom = _new(MailFrom)
    _mail_sender(cmd, argv[0])
    _mail_args(cmd, tuple(argv[1:]))
    return cmd


def _rcpt(data: bytes) -> RcptTo:
    argv = _argv(data)
    cmd: RcptTo = _new(RcptTo)
    _rcpt_recipient(cmd, argv[0])
    _rcpt_args(cmd, tuple(argv[1:]))
    return cmd


def _body(data: bytes) -> BodyChunk:
    cmd: BodyChunk = _new(BodyChunk)
    _body_data(cmd, data)
    return cmd


def _eom(data: bytes) -> EndOfMessage:
    cmd: EndOfMessage = _new(EndOfMessage)
    _eom_data(cmd, data)
    return cmd


# Command code -> decoder of the packet's data (valid codes only).
_BY_COMMAND: dict[Command, Callable[[bytes], MtaCommand]] = {
    Command.OPTNEG: _optneg,
    Command.MACRO: _macro,
    Command.CONNECT: _connect,
    Command.HELO: _helo,
    Command.MAIL: _mail,
    Command.RCPT: _rcpt,
    Command.DATA: _empty(Data),
    Command.HEADER: _header,
    Command.EOH: _empty(EndOfHeaders),
    Command.BODY: _body,
    Command.BODYEOB: _eom,
    Command.ABORT: _empty(Abort),
    Command.QUIT: _empty(Quit),
    Command.QUIT_NC: _empty(QuitNewConnection),
    Command.UNKNOWN: _unknown,
}
DECODERS: dict[int, Callable[[bytes], MtaCommand]] = {int(c): d for c, d in _BY_COMMAND.items()}


def decode_command(code: int, data: bytes) -> MtaCommand:
    """Decode one MTA packet.

    Raises RemoteProtocolError only where the conversation cannot go on:
    an unknown command code (whether it owes a reply is unknown) and an
    option negotiation that cannot be read. Every other packet is read as
    far as it can be (docs/protocol.md, "What is tolerated").
    """
    decoder = DECODERS.get(code)
    if decoder is None:
        raise RemoteProtocolError(f"unknown command code {bytes((code,))!r}")
    return decoder(data)


# --- encoding -------------------------------------------------------------


def encode_command(cmd: MtaCommand) -> bytes:
    """Return the packet for ``cmd``."""
    code = COMMAND_CODES[type(cmd)]
    match cmd:
        case OptionNegotiation():
            data = _U32X3.pack(cmd.version, int(cmd.actions), int(cmd.protocol))
        case DefineMacros():
            data = bytes((cmd.command,)) + b"".join(
                join_strings(n, v) for n, v in cmd.macros.items()
            )
        case Connect():
            data = join_strings(cmd.hostname) + cmd.family.value.encode()
            if cmd.family is not Family.UNKNOWN:
                assert cmd.port is not None and cmd.address is not None
                data += _U16.pack(cmd.port) + join_strings(cmd.address)
        case Helo():
            data = join_strings(cmd.name)
        case MailFrom():
            data = join_strings(cmd.sender, *cmd.args)
        case RcptTo():
            data = join_strings(cmd.recipient, *cmd.args)
        case Header():
            data = join_strings(cmd.name, cmd.value)
        case BodyChunk() | EndOfMessage():
            data = cmd.data
        case Unknown():
            data = join_strings(cmd.line)
        case Data() | EndOfHeaders() | Abort() | Quit() | QuitNewConnection():
            data = b""
    return frame(code, data)
