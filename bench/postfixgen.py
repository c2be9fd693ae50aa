"""An MTA-side load generator that talks to a milter the way Postfix does.

What it copies from Postfix 3.7's milter8.c (see /PROTOCOL.md in the design
notes and Postfix's MILTER_README):

- a new milter connection per SMTP session: OPTNEG (version 6, all nine
  actions, every protocol step offered), CONNECT, HELO, then the session's
  messages, then QUIT and close. ``per_connection`` sets how many messages
  one SMTP session carries (1 and 10 are typical of Postfix's smtpd; 0
  means one endless session, which no MTA does but which isolates the
  per-message cost);
- before each command, an SMFIC_MACRO packet with Postfix's default macro
  list for that stage, with only the macros Postfix defines at that point
  (``i``, the queue id, from DATA on), and sent even when the step itself
  was negotiated away; macro lists in the filter's OPTNEG reply replace the
  defaults, as they do in Postfix;
- every command the filter switched off (NO_*) is left out, and a reply is
  awaited only where one is owed (NR_*), so that a filter pays for exactly
  the steps it asked for;
- TCP_QUICKACK after every read, so no filter pays the 40 ms delayed-ACK
  stall (MTA-NOTES: every libmilter filter does otherwise, which would
  compare the kernel's timers rather than the filters).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field

from miltrd.protocol import (
    NO_REPLY_FLAG,
    NO_STEP_FLAG,
    ActionFlag,
    BodyChunk,
    Command,
    Connect,
    Data,
    DefineMacros,
    EndOfHeaders,
    EndOfMessage,
    Family,
    Header,
    Helo,
    MacroStage,
    MailFrom,
    OptionNegotiation,
    ProtocolFlag,
    Quit,
    RcptTo,
    decode_response,
    encode_command,
)

from .loadgen import drive

_LEN = struct.Struct("!I")
FINAL = frozenset(b"acdrty4fs")

# Postfix 3.7's default milter_*_macros.
POSTFIX_MACROS: dict[MacroStage, tuple[str, ...]] = {
    MacroStage.CONNECT: ("j", "{daemon_name}", "{daemon_addr}", "v", "_"),
    MacroStage.HELO: ("{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}"),
    MacroStage.ENVFROM: (
        "i",
        "{auth_type}",
        "{auth_authen}",
        "{auth_author}",
        "{mail_addr}",
        "{mail_host}",
        "{mail_mailer}",
    ),
    MacroStage.ENVRCPT: ("i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"),
    MacroStage.DATA: ("i",),
    MacroStage.EOH: ("i",),
    MacroStage.EOM: ("i",),
}

# The command byte each stage's macro packet precedes.
_STAGE_COMMAND = {
    MacroStage.CONNECT: ord("C"),
    MacroStage.HELO: ord("H"),
    MacroStage.ENVFROM: ord("M"),
    MacroStage.ENVRCPT: ord("R"),
    MacroStage.DATA: ord("T"),
    MacroStage.EOH: ord("N"),
    MacroStage.EOM: ord("E"),
}

SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.com"
CLIENT_ADDR = "192.0.2.10"
CLIENT_NAME = "client.example.net"


def _available(stage: MacroStage, queue_id: str | None) -> dict[str, str]:
    """The macros Postfix has a value for at ``stage`` (its README's table)."""
    values = {
        "j": "mx.example.com",
        "{daemon_name}": "mx.example.com",
        "{daemon_addr}": "127.0.0.1",
        "v": "Postfix 3.7.11",
        "_": f"{CLIENT_NAME} [{CLIENT_ADDR}]",
        "{client_addr}": CLIENT_ADDR,
        "{client_name}": CLIENT_NAME,
        "{client_port}": "40000",
    }
    if stage in (MacroStage.CONNECT, MacroStage.HELO, MacroStage.ENVFROM, MacroStage.DATA):
        values["{client_ptr}"] = CLIENT_NAME
    if stage == MacroStage.CONNECT:
        values["{client_connections}"] = "1"
    if stage == MacroStage.ENVFROM:
        values |= {"{mail_addr}": SENDER, "{mail_host}": "example.com", "{mail_mailer}": "smtp"}
    if stage == MacroStage.ENVRCPT:
        values |= {"{rcpt_addr}": RECIPIENT, "{rcpt_host}": "example.com", "{rcpt_mailer}": "smtp"}
    if queue_id is not None and stage in (MacroStage.DATA, MacroStage.EOH, MacroStage.EOM):
        values["i"] = queue_id
    return values


def _macro_packet(
    stage: MacroStage, lists: Mapping[MacroStage, tuple[str, ...]], queue_id: str | None
) -> bytes:
    have = _available(stage, queue_id)
    pairs = {name: have[name] for name in lists.get(stage, ()) if name in have}
    if not pairs:
        return b""
    return encode_command(DefineMacros(_STAGE_COMMAND[stage], pairs))


def make_message(size: int) -> tuple[list[Header], bytes]:
    """Ten ordinary headers and a body of ``size`` bytes of CRLF text."""
    headers = [Header(f"X-Header-{i}", f"value number {i} " + "x" * 40) for i in range(10)]
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdef\r\n"
    return headers, (line * (size // len(line) + 1))[:size]


@dataclass
class Result:
    messages: int = 0  # after the warm-up: for rates and latencies
    total: int = 0  # all, warm-up included: for CPU per message
    connections: int = 0  # all SMTP sessions opened
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


@dataclass
class _Step:
    """One command as bytes (macros first), and whether a reply is owed."""

    data: bytes
    reply: bool


class _Negotiated:
    def __init__(self, protocol: ProtocolFlag, lists: Mapping[MacroStage, tuple[str, ...]]):
        self.protocol = protocol
        self.lists = lists

    def step(self, command: object, code: str, stage: MacroStage | None, qid: str | None) -> _Step:
        macros = b"" if stage is None else _macro_packet(stage, self.lists, qid)
        off = NO_STEP_FLAG.get(Command(ord(code)))
        if off is not None and off in self.protocol:
            return _Step(macros, False)
        nr = NO_REPLY_FLAG.get(Command(ord(code)))
        return _Step(macros + encode_command(command), nr is None or nr not in self.protocol)


def opening_steps(neg: _Negotiated) -> list[_Step]:
    """CONNECT and HELO with their macros, as Postfix sends them after OPTNEG."""
    return [
        neg.step(
            Connect(CLIENT_NAME, Family.INET, 40000, CLIENT_ADDR), "C", MacroStage.CONNECT, None
        ),
        neg.step(Helo(CLIENT_NAME), "H", MacroStage.HELO, None),
    ]


def message_steps(
    neg: _Negotiated, headers: list[Header], chunks: list[BodyChunk], qid: str
) -> tuple[list[_Step], list[_Step], _Step]:
    """One message as Postfix sends it: MAIL ... EOH, the body chunks, and
    end of message, each with its macros (``qid`` as ``i``)."""
    steps = [
        neg.step(MailFrom(f"<{SENDER}>", ("SIZE=4096",)), "M", MacroStage.ENVFROM, None),
        neg.step(RcptTo(f"<{RECIPIENT}>"), "R", MacroStage.ENVRCPT, None),
        neg.step(Data(), "T", MacroStage.DATA, qid),
        *(neg.step(h, "L", None, qid) for h in headers),
        neg.step(EndOfHeaders(), "N", MacroStage.EOH, qid),
    ]
    body = [neg.step(c, "B", None, qid) for c in chunks]
    return steps, body, neg.step(EndOfMessage(), "E", MacroStage.EOM, qid)


def _batch(steps: list[_Step]) -> list[tuple[bytes, bool]]:
    """Group steps into writes, each ending where a reply is owed (as Postfix
    writes a command and then reads its reply)."""
    out: list[tuple[bytes, bool]] = []
    # A list joined once: ``bytes +=`` copies all so far at every step,
    # which for a 10 MiB body sent without replies is quadratic.
    pending: list[bytes] = []
    for s in steps:
        pending.append(s.data)
        if s.reply:
            out.append((b"".join(pending), True))
            pending = []
    if pending:
        out.append((b"".join(pending), False))
    return out


async def _read_final(reader: asyncio.StreamReader, sock: socket.socket) -> int:
    while True:
        head = await reader.readexactly(5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        length = _LEN.unpack_from(head)[0]
        if length > 1:
            await reader.readexactly(length - 1)
        if head[4] in FINAL:
            return head[4]


_queue_ids = itertools.count(0x10000)


async def _session(
    host: str,
    port: int,
    headers: list[Header],
    chunks: list[BodyChunk],
    per_connection: int,
    deadline: float,
    warmup_end: float,
    out: Result,
) -> None:
    """One SMTP session's milter connection, ``per_connection`` messages long."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    reader, writer = await asyncio.open_connection(host, port)
    out.connections += 1
    sock: socket.socket = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        writer.write(
            encode_command(OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF)))
        )
        head = await reader.readexactly(5)
        reply = decode_response(head[4], await reader.readexactly(_LEN.unpack_from(head)[0] - 1))
        lists: Mapping[MacroStage, tuple[str, ...]] = dict(POSTFIX_MACROS)
        lists = {**lists, **getattr(reply, "macros", {})}
        neg = _Negotiated(ProtocolFlag(getattr(reply, "protocol", 0)), lists)
        for data, owed in _batch(opening_steps(neg)):
            writer.write(data)
            if owed:
                await _read_final(reader, sock)
        sent = 0
        while loop.time() < deadline and (per_connection == 0 or sent < per_connection):
            qid = f"4Q{next(_queue_ids):X}"
            steps, body, eom = message_steps(neg, headers, chunks, qid)
            began = loop.time()
            for data, owed in _batch(steps):
                writer.write(data)
                if owed:
                    await _read_final(reader, sock)
            for data, owed in _batch(body):
                writer.write(data)
                if owed and await _read_final(reader, sock) == ord("s"):
                    break  # SKIP: no more body
            writer.write(eom.data)
            await _read_final(reader, sock)
            sent += 1
            out.total += 1
            if began >= warmup_end:
                out.messages += 1
                # The first message of a session carries its set-up.
                out.latencies.append(loop.time() - (start if sent == 1 else began))
        writer.write(encode_command(Quit()))
    except (ConnectionError, asyncio.IncompleteReadError):
        out.errors += 1
    finally:
        writer.close()


async def _client(
    host: str,
    port: int,
    size: int,
    per_connection: int,
    deadline: float,
    warmup_end: float,
    out: Result,
) -> None:
    headers, body = make_message(size)
    chunks = [BodyChunk(body[i : i + 65535]) for i in range(0, len(body), 65535)]
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        await _session(host, port, headers, chunks, per_connection, deadline, warmup_end, out)


async def run_postfix_like(
    host: str,
    port: int,
    *,
    connections: int,
    size: int,
    per_connection: int,
    seconds: float,
) -> tuple[Result, float, float]:
    """``connections`` concurrent SMTP sessions, back to back, for ``seconds``
    after a short warm-up. Returns (result, measured seconds, generator CPU s)."""
    out = Result()

    def client(deadline: float, warmup_end: float) -> Awaitable[None]:
        return _client(host, port, size, per_connection, deadline, warmup_end, out)

    seconds, cpu = await drive(client, connections, seconds)
    return out, seconds, cpu
