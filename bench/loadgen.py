"""The MTA-side load generator: many milter connections, messages back to back.

Each connection negotiates once (version 6, everything offered, as Postfix
does), sends CONNECT and HELO, then runs messages: MAIL, RCPT, DATA, ten
headers, EOH, the body in chunks of at most 65535 bytes, end of message.
Every command the filter switched off is left out, and the generator waits
for a reply only where one is owed, exactly as an MTA does. Packets are
encoded once up front with miltrd's engine, so the generator spends its
CPU on sockets, not on encoding.

Two MTA behaviours: ``delayed`` (the kernel's ordinary delayed ACKs, what
Postfix and Sendmail get) and ``quickack`` (TCP_QUICKACK re-armed after
every read, an MTA that never delays its ACKs).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from miltrd.protocol import (
    NO_REPLY_FLAG,
    NO_STEP_FLAG,
    ActionFlag,
    BodyChunk,
    Command,
    Connect,
    Data,
    EndOfHeaders,
    EndOfMessage,
    Family,
    Header,
    Helo,
    MailFrom,
    MtaCommand,
    OptionNegotiation,
    ProtocolFlag,
    RcptTo,
    encode_command,
)
from miltrd.protocol._commands import COMMAND_CODES

FINAL = set(b"acdrty4fs")
_LEN = struct.Struct("!I")


def make_message(size: int) -> tuple[list[Header], bytes]:
    headers = [Header(f"X-Header-{i}", f"value number {i} " + "x" * 40) for i in range(10)]
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdef\r\n"
    body = (line * (size // len(line) + 1))[:size]
    return headers, body


@dataclass
class Result:
    messages: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


def _plan(protocol: ProtocolFlag, commands: list[MtaCommand]) -> list[tuple[bytes, bool]]:
    """Group commands into writes, each ending with one that needs a reply."""
    batches: list[tuple[bytes, bool]] = []
    pending = b""
    for cmd in commands:
        code = COMMAND_CODES[type(cmd)]
        off = NO_STEP_FLAG.get(Command(code))
        if off is not None and off in protocol:
            continue
        pending += encode_command(cmd)
        nr = NO_REPLY_FLAG.get(Command(code))
        if nr is None or nr not in protocol:
            batches.append((pending, True))
            pending = b""
    if pending:
        batches.append((pending, False))
    return batches


async def _read_final(reader: asyncio.StreamReader, sock: socket.socket | None) -> int:
    while True:
        head = await reader.readexactly(5)
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        length = _LEN.unpack_from(head)[0]
        if length > 1:
            await reader.readexactly(length - 1)
        if head[4] in FINAL:
            return head[4]


async def _connection(
    host: str, port: int, size: int, quickack: bool, deadline: float, warmup_end: float, out: Result
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket") if quickack else None
    optneg = OptionNegotiation(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF))
    writer.write(encode_command(optneg))
    head = await reader.readexactly(5)
    data = await reader.readexactly(_LEN.unpack_from(head)[0] - 1)
    protocol = ProtocolFlag(struct.unpack_from("!III", data)[2])
    headers, body = make_message(size)
    session = _plan(
        protocol,
        [
            Connect("client.example.net", Family.INET, 40000, "127.0.0.1"),
            Helo("client.example.net"),
        ],
    )
    chunks = [BodyChunk(body[i : i + 65535]) for i in range(0, len(body), 65535)]
    message = _plan(
        protocol,
        [
            MailFrom("<sender@example.com>"),  # internal domain: zombie passes
            RcptTo("<rcpt@example.com>"),
            Data(),
            *headers,
            EndOfHeaders(),
            *chunks,
            EndOfMessage(),
        ],
    )
    for batch, reply in session:
        writer.write(batch)
        if reply:
            await _read_final(reader, sock)
    loop = asyncio.get_running_loop()
    try:
        while (now := loop.time()) < deadline:
            i = 0
            while i < len(message):
                batch, reply = message[i]
                writer.write(batch)
                i += 1
                if reply and await _read_final(reader, sock) == ord("s"):
                    i = len(message) - 1  # SKIP: no more body, on to end of message
            if now >= warmup_end:
                out.messages += 1
                out.latencies.append(loop.time() - now)
    except (ConnectionError, asyncio.IncompleteReadError):
        out.errors += 1
    finally:
        writer.close()


async def run_load(
    host: str, port: int, *, connections: int, size: int, quickack: bool, seconds: float
) -> tuple[Result, float, float]:
    """Returns (result, measured wall seconds, generator CPU seconds)."""
    out = Result()

    def client(deadline: float, warmup_end: float) -> Awaitable[None]:
        return _connection(host, port, size, quickack, deadline, warmup_end, out)

    seconds, cpu = await drive(client, connections, seconds)
    return out, seconds, cpu


async def drive(
    client: Callable[[float, float], Awaitable[None]], connections: int, seconds: float
) -> tuple[float, float]:
    """Run ``connections`` copies of ``client(deadline, warmup_end)`` for
    ``seconds`` after a short warm-up. Returns (measured seconds, generator
    CPU seconds over the measured part)."""
    loop = asyncio.get_running_loop()
    warmup = min(0.5, seconds / 4)
    start = loop.time()
    cpu0 = time.process_time()
    await asyncio.gather(
        *(client(start + warmup + seconds, start + warmup) for _ in range(connections))
    )
    cpu = time.process_time() - cpu0
    return seconds, cpu * seconds / (seconds + warmup)
