"""Connections served inline in the read callback (server/inline.py), on
both event loops, under MTAs and plugins that make it hard: hooks that
wait while the MTA pipelines, packets dribbled a byte at a time, the MTA
leaving while a hook waits, shutdown mid-hook, and what a connection
leaves behind when it ends."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import struct
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from miltrd.chain import build_runtime
from miltrd.config import load
from miltrd.logs import ContextFilter
from miltrd.mta import Envelope, MilterClient, open_milter, replay
from miltrd.protocol import (
    NEED_DATA,
    Abort,
    BodyChunk,
    Command,
    Connect,
    DefineMacros,
    EndOfHeaders,
    EndOfMessage,
    Family,
    Header,
    Helo,
    MailFrom,
    MtaConnection,
    Quit,
    QuitNewConnection,
    RcptTo,
    ReplyCode,
)
from miltrd.server import Daemon, eventloop
from miltrd.server import inline as server_inline

from ..testplugins import Slow, Waiter
from ..tools import free_port

LOOPS = ["asyncio", "uvloop"]

WAITER = """\
[chain]
plugins = ["waiter"]
[plugins.waiter]
use = "tests.testplugins:Waiter"
{options}
"""


@pytest.fixture(params=LOOPS)
def loop_name(request: pytest.FixtureRequest) -> str:
    if request.param == "uvloop" and not eventloop.uvloop_available():
        pytest.fail("uvloop is a dependency of miltrd (pyproject.toml) and must be installed")
    return str(request.param)


@pytest.fixture(autouse=True)
def _fresh_waiter() -> None:
    Waiter.seen = []


def run_daemon(
    tmp_path: Path,
    loop_name: str,
    chain: str,
    body: Callable[[Daemon, str], Awaitable[Any]],
    extra: str = "",
    shutdown_timeout: float = 2.0,
) -> Any:
    """Run ``body(daemon, spec)`` against an in-process daemon on ``loop_name``."""
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["{spec}"]\nshutdown_timeout = {shutdown_timeout}\n{extra}\n' + chain
    )
    out: list[Any] = []

    async def main() -> None:
        daemon = Daemon(str(cfg), build_runtime(load(cfg)))
        await daemon.start()
        try:
            out.append(await body(daemon, spec))
        finally:
            await daemon.shutdown()

    eventloop.run(main(), loop_name)
    return out[0]


def waiter_chain(**options: Any) -> str:
    lines = []
    for key, value in options.items():
        if isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, list):
            lines.append(f"{key} = [" + ", ".join(f'"{v}"' for v in value) + "]")
        else:
            lines.append(f"{key} = {value}")
    return WAITER.format(options="\n".join(lines))


def message(headers: int, body: bytes) -> bytes:
    head = "".join(f"X-H{i}: value {i}\r\n" for i in range(headers))
    return f"From: a@example.org\r\n{head}Subject: test\r\n\r\n".encode() + body


def added(result: Any) -> dict[str, str]:
    return {c.name: c.value for c in result.changes if hasattr(c, "name")}


async def send_message(spec: str, raw: bytes) -> Any:
    reader, writer = await open_milter(spec)
    client = MilterClient(reader, writer)
    try:
        return await replay(client, raw, Envelope(sender="a@example.org", recipients=["b@x.test"]))
    finally:
        await client.close()


async def settle(daemon: Daemon) -> None:
    for _ in range(500):
        if not daemon.tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(daemon.tasks)} session(s) still open")


class RawMta:
    """An MTA over a plain socket, sending packets whole, pipelined or
    dribbled, and reading the filter's replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.mta = MtaConnection()

    @classmethod
    async def open(cls, spec: str) -> RawMta:
        return cls(*await open_milter(spec))

    async def write(self, data: bytes, *, dribble: bool = False) -> None:
        if not dribble:
            self.writer.write(data)
            await self.writer.drain()
            return
        for i in range(len(data)):
            self.writer.write(data[i : i + 1])
            await self.writer.drain()
            await asyncio.sleep(0.0005)

    async def replies(self) -> list[Any]:
        """Every response up to the final reply owed."""
        got = []
        while self.mta.awaiting is not None:
            event = self.mta.next_event()
            if event is NEED_DATA:
                data = await asyncio.wait_for(self.reader.read(65536), 20)
                self.mta.receive_data(data)
                continue
            got.append(event)
        return got

    def packet(self, cmd: Any) -> bytes:
        """The bytes of ``cmd``; none for a command the filter asked not to get."""
        return b"" if self.mta.skips(type(cmd)) else self.mta.send(cmd)

    async def command(self, cmd: Any, *, dribble: bool = False) -> list[Any]:
        await self.write(self.packet(cmd), dribble=dribble)
        return await self.replies()

    async def hello(self, *, dribble: bool = False, negotiate: bool = True) -> None:
        if negotiate:
            await self.command(self.mta.option_negotiation(), dribble=dribble)
        await self.command(Connect("client.test", Family.INET, 25, "192.0.2.1"), dribble=dribble)
        await self.command(Helo("client.test"), dribble=dribble)

    def close(self) -> None:
        self.writer.close()


async def run_message(
    mta: RawMta, raw: bytes, *, dribble: bool = False, chunk: int = 65535
) -> list[Any]:
    """One message, every command whose reply is not owed pipelined with
    the next; returns the end-of-message responses."""
    head, _, body = raw.partition(b"\r\n\r\n")
    await mta.write(mta.mta.send(DefineMacros(Command.MAIL, {"i": "4XyZ1"})))
    await mta.command(MailFrom("<a@example.org>", ()), dribble=dribble)
    await mta.command(RcptTo("<b@x.test>", ()), dribble=dribble)
    out = bytearray()
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(": ")
        out += mta.packet(Header(name, value))
        assert mta.mta.awaiting is None  # headers are no-reply
    out += mta.packet(EndOfHeaders())
    if mta.mta.awaiting is not None:
        await mta.write(bytes(out), dribble=dribble)
        out.clear()
        await mta.replies()
    for i in range(0, len(body), chunk):
        out += mta.packet(BodyChunk(body[i : i + chunk]))
        assert mta.mta.awaiting is None  # body chunks are no-reply
    out += mta.packet(EndOfMessage())
    await mta.write(bytes(out), dribble=dribble)
    return await mta.replies()


def eom_headers(responses: list[Any]) -> dict[str, str]:
    return {r.name: r.value for r in responses if hasattr(r, "name")}


# --- hooks that wait ---------------------------------------------------------------


def test_end_of_message_hook_past_its_timeout_tempfails_that_message_only(
    tmp_path: Path, loop_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The plugin's timeout ends the hook, not the session: the message gets
    the plugin's on_error (tempfail), the connection goes on to the next
    message, and nothing says the daemon is shutting down."""
    chain = (
        '[chain]\nplugins = ["slow"]\n'
        '[plugins.slow]\nuse = "tests.testplugins:Slow"\nseconds = 5.0\ntimeout = 0.2\n'
    )

    async def body(daemon: Daemon, spec: str) -> Any:
        Slow.inside = None
        mta = await RawMta.open(spec)
        try:
            await mta.hello()
            first = await run_message(mta, message(1, b"one\r\n"))
            second = await run_message(mta, message(1, b"two\r\n"))
        finally:
            mta.close()
        await settle(daemon)
        return first, second

    with caplog.at_level(logging.INFO, logger="miltrd"):
        first, second = run_daemon(tmp_path, loop_name, chain, body)
    for responses in (first, second):
        assert responses == [
            ReplyCode(451, ("Temporary failure in mail filter, try again later",), "4.3.0")
        ]
    assert caplog.text.count("eom hook timed out after 0.2s") == 2
    assert "session cancelled" not in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("how", ["sleep", "yield", "thread", "timeout", "timeout0", "wait_for"])
def test_hooks_that_wait_while_the_mta_pipelines(
    tmp_path: Path, loop_name: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Headers and body chunks (no reply) arrive while a hook waits; each
    is handled once, in order, in the hook's own task and log context."""
    chain = waiter_chain(how=how, seconds=0.01)
    raw = message(40, b"line of body\r\n" * 20000)

    async def body(daemon: Daemon, spec: str) -> Any:
        mta = await RawMta.open(spec)
        try:
            await mta.hello()
            first = await run_message(mta, raw, chunk=8192)
            second = await run_message(mta, raw, chunk=65535)
        finally:
            mta.close()
        await settle(daemon)
        return first, second

    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO, logger="miltrd"):
        first, second = run_daemon(tmp_path, loop_name, chain, body)
    body_size = len(raw.partition(b"\r\n\r\n")[2])
    # X-Waited-Headers counts this connection's headers so far.
    assert eom_headers(first) == {"X-Waited-Headers": "42", "X-Waited-Body": str(body_size)}
    assert eom_headers(second) == {"X-Waited-Headers": "84", "X-Waited-Body": str(body_size)}
    headers = [s[1] for s in Waiter.seen if s[0] == "header"]
    expected = ["From: a@example.org"] + [f"X-H{i}: value {i}" for i in range(40)]
    expected += ["Subject: test"]
    assert headers == expected * 2
    chunks = [int(s[1]) for s in Waiter.seen if s[0] == "body"]
    assert sum(chunks) == 2 * body_size
    assert [s for s in Waiter.seen if not s[4]] == [], "a hook resumed in another task"
    conns = {s[3] for s in Waiter.seen}
    assert len(conns) == 1 and {s[2] for s in Waiter.seen} == {"4XyZ1"}
    # Every line a hook logs carries the connection's id and the queue id.
    lines = [r for r in caplog.records if r.getMessage().startswith("waiter: ")]
    assert len(lines) == len(Waiter.seen)
    assert {(r.conn, r.qid) for r in lines} == {(*conns, "4XyZ1: ")}  # type: ignore[attr-defined]
    assert "Traceback" not in caplog.text


def test_hook_raising_after_it_waited_tempfails(
    tmp_path: Path, loop_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    chain = waiter_chain(how="sleep", raise_at="header")

    async def body(daemon: Daemon, spec: str) -> Any:
        first = await send_message(spec, message(3, b"x\r\n"))
        await settle(daemon)
        return first

    with caplog.at_level(logging.INFO, logger="miltrd"):
        result = run_daemon(tmp_path, loop_name, chain, body)
    assert result.action == "tempfail"
    assert "plugin waiter: header hook failed" in caplog.text


def test_packets_dribbled_a_byte_at_a_time_while_hooks_wait(tmp_path: Path, loop_name: str) -> None:
    chain = waiter_chain(how="sleep", seconds=0.002)
    raw = message(2, b"abc\r\n" * 10)

    async def body(daemon: Daemon, spec: str) -> Any:
        mta = await RawMta.open(spec)
        try:
            await mta.hello(dribble=True)
            out = await run_message(mta, raw, dribble=True)
        finally:
            mta.close()
        await settle(daemon)
        return out

    responses = run_daemon(tmp_path, loop_name, chain, body)
    assert eom_headers(responses) == {"X-Waited-Headers": "4", "X-Waited-Body": "50"}


def test_abort_and_quit_nc_pipelined_while_a_hook_waits(tmp_path: Path, loop_name: str) -> None:
    """ABORT mid-body and QUIT_NC arrive while a body hook waits; the next
    message on the same connection is whole and on its own."""
    chain = waiter_chain(how="sleep", seconds=0.05)
    raw = message(2, b"second\r\n")

    async def body(daemon: Daemon, spec: str) -> Any:
        mta = await RawMta.open(spec)
        try:
            await mta.hello()
            await mta.command(MailFrom("<a@example.org>", ()))
            await mta.command(RcptTo("<b@x.test>", ()))
            out = bytearray(mta.packet(Header("From", "first@example.org")))
            out += mta.packet(EndOfHeaders())
            assert mta.mta.awaiting is None
            out += mta.packet(BodyChunk(b"first\r\n"))
            out += mta.packet(Abort())
            out += mta.packet(QuitNewConnection())
            await mta.write(bytes(out))
            await mta.hello(negotiate=False)
            responses = await run_message(mta, raw)
        finally:
            mta.close()
        await settle(daemon)
        return responses

    responses = run_daemon(tmp_path, loop_name, chain, body)
    assert eom_headers(responses)["X-Waited-Body"] == str(len(b"second\r\n"))
    phases = [s[0] for s in Waiter.seen]
    assert phases.count("abort") == 1
    assert phases.index("abort") < phases.index("eom")


# --- the MTA leaving ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["eof", "rst"])
@pytest.mark.parametrize("at", ["header", "eom"])
def test_mta_leaving_while_a_hook_waits(
    tmp_path: Path, loop_name: str, how: str, at: str, caplog: pytest.LogCaptureFixture
) -> None:
    chain = waiter_chain(how="sleep", seconds=0.3, at=[at])

    async def body(daemon: Daemon, spec: str) -> Any:
        mta = await RawMta.open(spec)
        await mta.hello()
        await mta.command(MailFrom("<a@example.org>", ()))
        await mta.command(RcptTo("<b@x.test>", ()))
        out = bytearray(mta.packet(Header("From", "a@example.org")))
        out += mta.packet(Header("Subject", "s"))
        out += mta.packet(EndOfHeaders())
        out += mta.packet(BodyChunk(b"body\r\n"))
        out += mta.packet(EndOfMessage())
        await mta.write(bytes(out))
        await asyncio.sleep(0.1)  # the hook is waiting now
        if how == "rst":
            sock = mta.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            mta.writer.close()
        else:
            mta.writer.write_eof()
        await settle(daemon)
        mta.writer.close()
        # and the daemon still serves
        return await send_message(spec, message(1, b"after\r\n"))

    with caplog.at_level(logging.INFO, logger="miltrd"):
        after = run_daemon(tmp_path, loop_name, chain, body)
    assert after.action in ("continue", "accept"), after
    assert "Traceback" not in caplog.text
    assert "internal error" not in caplog.text
    assert "session cancelled" not in caplog.text


def test_eof_in_the_middle_of_a_packet_while_a_hook_waits(
    tmp_path: Path, loop_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    chain = waiter_chain(how="sleep", seconds=0.2, at=["header"])

    async def body(daemon: Daemon, spec: str) -> Any:
        mta = await RawMta.open(spec)
        await mta.hello()
        await mta.command(MailFrom("<a@example.org>", ()))
        await mta.command(RcptTo("<b@x.test>", ()))
        data = mta.packet(Header("From", "a@example.org")) + mta.packet(Header("To", "b"))
        await mta.write(data[:-3])
        mta.writer.write_eof()
        await settle(daemon)
        mta.writer.close()

    with caplog.at_level(logging.INFO, logger="miltrd"):
        run_daemon(tmp_path, loop_name, chain, body)
    lines = [r for r in caplog.records if "middle of a packet" in r.getMessage()]
    assert len(lines) == 1, caplog.text


@pytest.mark.parametrize("stall", ["between", "mid-packet", "mid-hook"])
def test_idle_timeout_closes_with_one_line(
    tmp_path: Path, loop_name: str, stall: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An MTA that stalls (between commands, inside a packet, or while the
    daemon still has buffered commands behind a waiting hook) is closed
    after idle_timeout with one warning line, and the daemon still serves."""
    chain = waiter_chain(how="sleep", seconds=0.05, at=["header"])

    async def body(daemon: Daemon, spec: str) -> Any:
        mta = await RawMta.open(spec)
        await mta.hello()
        await mta.command(MailFrom("<a@example.org>", ()))
        await mta.command(RcptTo("<b@x.test>", ()))
        if stall == "mid-packet":
            await mta.write(mta.packet(Header("From", "a@example.org"))[:-4])
        elif stall == "mid-hook":
            await mta.write(mta.packet(Header("From", "a@example.org")) * 3)
        closed = await asyncio.wait_for(mta.reader.read(), 10)
        mta.close()
        await settle(daemon)
        return closed, await send_message(spec, message(1, b"after\r\n"))

    with caplog.at_level(logging.INFO, logger="miltrd"):
        closed, after = run_daemon(tmp_path, loop_name, chain, body, extra="idle_timeout = 0.4")
    assert closed == b""
    assert after.action in ("continue", "accept")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("MTA idle for"), warnings


# --- shutdown -------------------------------------------------------------------------


@pytest.mark.parametrize("at", ["mail", "header", "eom"])
def test_shutdown_tempfails_the_reply_owed_by_a_waiting_hook(
    tmp_path: Path, loop_name: str, at: str, caplog: pytest.LogCaptureFixture
) -> None:
    chain = waiter_chain(how="sleep", seconds=30, at=[at]) + "timeout = 60\n"

    async def body(daemon: Daemon, spec: str) -> Any:
        sending = asyncio.ensure_future(send_message(spec, message(1, b"x\r\n")))
        while not daemon.tasks:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # inside the hook
        await daemon.shutdown()
        return await asyncio.wait_for(sending, 10)

    with caplog.at_level(logging.INFO, logger="miltrd"):
        result = run_daemon(tmp_path, loop_name, chain, body, shutdown_timeout=0.2)
    assert (result.final.code, result.final.xcode) == (451, "4.3.2")
    lines = [r for r in caplog.records if "session cancelled at shutdown" in r.getMessage()]
    assert len(lines) == 1
    assert "Traceback" not in caplog.text


def test_max_connections_answers_421(tmp_path: Path, loop_name: str) -> None:
    chain = waiter_chain(how="sleep", seconds=0.01)

    async def body(daemon: Daemon, spec: str) -> Any:
        holder = await RawMta.open(spec)
        await holder.hello()
        busy = await send_message(spec, message(1, b"x\r\n"))
        holder.close()
        await settle(daemon)
        return busy, await send_message(spec, message(1, b"x\r\n"))

    busy, after = run_daemon(tmp_path, loop_name, chain, body, extra="max_connections = 1")
    assert busy.final == ReplyCode(421, ("Mail filter busy, try again later",), "4.3.2")
    assert after.action in ("continue", "accept")


# --- bounds and leftovers -----------------------------------------------------------------


def test_a_large_body_while_a_hook_waits_is_read_within_the_bound(
    tmp_path: Path, loop_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10 MiB of body chunks (no reply) while the first body hook waits:
    reading pauses, so what the engine holds stays near PAUSE_AT, and
    resumes, so the whole body arrives."""
    chain = waiter_chain(how="sleep", seconds=0.5, at=["body"], times=1)
    peak = [0]
    real = server_inline.InlineProtocol.data_received

    def data_received(self: server_inline.InlineProtocol, data: bytes) -> None:
        real(self, data)
        if self.handler is not None:
            peak[0] = max(peak[0], self.handler.fc.buffered)

    monkeypatch.setattr(server_inline.InlineProtocol, "data_received", data_received)
    raw = message(1, b"0123456789abcd\r\n" * (10 * 65536))

    async def body(daemon: Daemon, spec: str) -> Any:
        mta = await RawMta.open(spec)
        try:
            await mta.hello()
            out = await run_message(mta, raw)
        finally:
            mta.close()
        await settle(daemon)
        return out

    responses = run_daemon(tmp_path, loop_name, chain, body)
    assert eom_headers(responses)["X-Waited-Body"] == str(10 * 1024 * 1024)
    assert peak[0] <= server_inline.PAUSE_AT + 2 * 256 * 1024, peak[0]


@pytest.mark.parametrize("how", ["quit", "eof", "rst", "waiting", "rst-waiting", "garbage"])
def test_ended_connections_leave_no_garbage_cycles(
    tmp_path: Path, loop_name: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of connections, each ended as ``how`` says: once closed,
    their protocols are freed by reference counting alone (a cycle would
    wait for the garbage collector, and RSS would grow meanwhile)."""
    chain = waiter_chain(how="sleep", seconds=0.05, at=["mail"])
    protocols: list[weakref.ref[server_inline.InlineProtocol]] = []
    real = server_inline.InlineProtocol.__init__

    def init(self: server_inline.InlineProtocol, entry: Any) -> None:
        real(self, entry)
        protocols.append(weakref.ref(self))

    monkeypatch.setattr(server_inline.InlineProtocol, "__init__", init)

    async def one(spec: str) -> None:
        mta = await RawMta.open(spec)
        await mta.hello()
        if how.endswith("waiting"):
            await mta.write(mta.packet(MailFrom("<a@example.org>", ())))
            await asyncio.sleep(0.01)
        if how == "garbage":
            await mta.write(b"\x00\x00\x00\x03Zxy")
            await asyncio.sleep(0.05)
        if how.startswith("rst"):
            sock = mta.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif how == "quit":
            await mta.write(mta.packet(Quit()))
        elif how == "eof":
            mta.writer.write_eof()
            await asyncio.sleep(0.01)
        mta.writer.close()

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def body(daemon: Daemon, spec: str) -> Any:
        await asyncio.gather(*(one(spec) for _ in range(5)))  # warm-up: lazily opened fds
        await settle(daemon)
        protocols.clear()
        before = open_fds()
        await asyncio.gather(*(one(spec) for _ in range(50)))
        await settle(daemon)
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert open_fds() <= before, "file descriptors left open"
        return sum(1 for ref in protocols if ref() is not None)

    gc.collect()
    gc.disable()
    try:
        alive = run_daemon(tmp_path, loop_name, chain, body)
    finally:
        gc.enable()
    assert len(protocols) == 50
    assert alive == 0, f"{alive} of 50 protocols kept alive by reference cycles"


# --- ACKs ------------------------------------------------------------------------

RECORDER = '[chain]\nplugins = ["rec"]\n[plugins.rec]\nuse = "tests.testplugins:Recorder"\n'


def test_quickack_only_for_reads_no_reply_answers(
    tmp_path: Path, loop_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TCP_QUICKACK is re-armed (the kernel ACKs at once) after a read that
    gets no reply, here a macro packet alone: an MTA without TCP_NODELAY
    would hold its next packet until that ACK came, up to 40 ms later. A
    read answered at once is not: the reply carries the ACK, and the
    setsockopt would send a second, empty segment."""
    from miltrd.server import connection

    acks: list[int] = []
    real = connection._rearm

    def counting(sock: socket.socket | None) -> Callable[[], None]:
        setter = real(sock)

        def rearm() -> None:
            acks.append(1)
            setter()

        return rearm

    monkeypatch.setattr(connection, "_rearm", counting)

    async def body(daemon: Daemon, spec: str) -> Any:
        mta = await RawMta.open(spec)
        await mta.hello()  # OPTNEG and CONNECT, each answered (HELO is not asked for)
        answered = len(acks)
        await mta.write(mta.mta.send(DefineMacros(Command.MAIL, {"i": "4XyZ1"})))
        for _ in range(500):
            if acks[answered:]:
                break
            await asyncio.sleep(0.01)
        after_macros = len(acks)
        replies = await mta.command(MailFrom("<a@example.org>", ()))
        mta.close()
        await settle(daemon)
        return answered, after_macros, len(acks), replies

    answered, after_macros, end, replies = run_daemon(tmp_path, loop_name, RECORDER, body)
    assert [type(r).__name__ for r in replies] == ["Continue"]
    assert (answered, after_macros, end) == (0, 1, 1)
