"""The daemon under bad peers: each bad connection is closed with one log
line, every other connection keeps being served."""

from __future__ import annotations

import asyncio
import logging
import struct
from pathlib import Path

import pytest

from miltrd.chain import build_runtime
from miltrd.config import load
from miltrd.mta import MilterClient, open_milter
from miltrd.protocol import (
    NEED_DATA,
    ActionFlag,
    BodyChunk,
    Connect,
    EndOfHeaders,
    EndOfMessage,
    Family,
    Header,
    MailFrom,
    MtaConnection,
    OptionNegotiation,
    ProtocolFlag,
    RcptTo,
)
from miltrd.protocol import AddHeader as AddHeaderResponse
from miltrd.server import Daemon

from ..tools import free_port
from .test_daemon import send, stamps


def start_config(tmp_path: Path, extra: str = "", chain: str = "") -> tuple[Path, str]:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp_path / "m.toml"
    stamp = '[chain]\nplugins = ["stamp"]\n[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\n'
    cfg.write_text(
        f'[daemon]\nlisten = ["{spec}"]\nshutdown_timeout = 2.0\n{extra}\n' + (chain or stamp)
    )
    return cfg, spec


async def with_daemon(cfg: Path, body):
    daemon = Daemon(str(cfg), build_runtime(load(cfg)))
    await daemon.start()
    try:
        return await body(daemon)
    finally:
        await daemon.shutdown()


def optneg() -> bytes:
    return struct.pack("!IBIII", 13, ord("O"), 6, 0x1FF, 0x1FFFFF)


async def raw_peer(port: int, payload: bytes, *, close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    if close:
        writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def port_of(spec: str) -> int:
    return int(spec.split(":")[1].split("@")[0])


@pytest.mark.parametrize(
    "payload, logged",
    [
        pytest.param(b"\x40\x00\x00\x01O", "exceeds the limit", id="oversize-length"),
        pytest.param(optneg()[:9], "middle of a packet", id="truncated"),
        pytest.param(optneg() + b"\x00\x00\x00\x03Zxy", "unknown command code", id="garbage"),
        pytest.param(b"\x00\x00\x00\x03Hx\x00", "before option negotiation", id="out-of-order"),
    ],
)
def test_bad_stream_closes_only_that_connection(tmp_path, caplog, payload, logged) -> None:
    cfg, spec = start_config(tmp_path)

    async def body(daemon):
        await raw_peer(port_of(spec), payload)
        return await send(spec)

    with caplog.at_level(logging.INFO, logger="miltrd"):
        result = asyncio.run(with_daemon(cfg, body))
    assert stamps(result) == ["added by miltrd"]
    lines = [r for r in caplog.records if logged in r.getMessage()]
    assert len(lines) == 1, caplog.text


def test_peer_that_stalls_mid_packet_is_closed_after_idle_timeout(tmp_path, caplog) -> None:
    cfg, spec = start_config(tmp_path, "idle_timeout = 0.3")

    async def body(daemon):
        closed = await raw_peer(port_of(spec), optneg()[:7], close=False)
        return closed, await send(spec)

    with caplog.at_level(logging.INFO, logger="miltrd"):
        closed, result = asyncio.run(with_daemon(cfg, body))
    assert closed == b""
    assert stamps(result) == ["added by miltrd"]
    assert "MTA idle for" in caplog.text


def test_peer_that_drops_mid_body_aborts_the_message(tmp_path, caplog) -> None:
    cfg, spec = start_config(
        tmp_path,
        chain='[chain]\nplugins = ["rec"]\n[plugins.rec]\nuse = "tests.testplugins:Recorder"\n',
    )
    from tests.testplugins import Recorder

    async def body(daemon):
        reader, writer = await open_milter(spec)
        client = MilterClient(reader, writer)
        await client.negotiate()
        mta = client.mta
        for cmd in (Connect("h", Family.INET, 1, "192.0.2.1"), MailFrom("<a@b>"), RcptTo("<c@d>")):
            if not mta.skips(type(cmd)):
                await client.command(cmd)
        writer.write(mta.send(BodyChunk(b"partial body")) if not mta.skips(BodyChunk) else b"")
        writer.close()  # gone mid-body
        while daemon.tasks:
            await asyncio.sleep(0.01)
        return await send(spec)

    Recorder.calls.clear()
    with caplog.at_level(logging.INFO, logger="miltrd"):
        result = asyncio.run(with_daemon(cfg, body))
    assert result.action == "accept"
    assert ("rec", "abort") in Recorder.calls
    assert "action=aborted" in caplog.text


def test_mta_closing_during_end_of_message(tmp_path, caplog) -> None:
    cfg, spec = start_config(
        tmp_path,
        chain='[chain]\nplugins = ["slow", "stamp"]\n'
        '[plugins.slow]\nuse = "tests.testplugins:Slow"\nseconds = 0.3\n'
        '[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\n',
    )

    async def body(daemon):
        reader, writer = await open_milter(spec)
        client = MilterClient(reader, writer)
        await client.negotiate()
        mta = client.mta
        await client.command(MailFrom("<a@b>")) if not mta.skips(MailFrom) else None
        writer.write(mta.send(EndOfMessage()))
        await writer.drain()
        writer.close()  # the MTA gives up while the chain is still working
        while daemon.tasks:
            await asyncio.sleep(0.01)
        return await send(spec)

    with caplog.at_level(logging.INFO, logger="miltrd"):
        result = asyncio.run(with_daemon(cfg, body))
    assert stamps(result) == ["added by miltrd"]
    assert "Traceback" not in caplog.text


def test_a_thousand_idle_connections_and_still_serving(tmp_path) -> None:
    cfg, spec = start_config(tmp_path, "max_connections = 2000")

    async def body(daemon):
        held = []
        for _ in range(1000):
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(spec))
            writer.write(optneg())
            held.append((reader, writer))
        for reader, _ in held:
            await reader.readexactly(17)  # every one was negotiated
        served = await send(spec)
        count = len(daemon.tasks)
        for _, writer in held:
            writer.close()
        while daemon.tasks:
            await asyncio.sleep(0.01)
        return served, count

    served, count = asyncio.run(with_daemon(cfg, body))
    assert count >= 1000
    assert stamps(served) == ["added by miltrd"]


def test_negotiation_that_cannot_give_needed_actions_is_logged(tmp_path, caplog) -> None:
    cfg, spec = start_config(tmp_path)

    async def body(daemon):
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(spec))
        mta = MtaConnection(actions=ActionFlag.NONE | ActionFlag(0x2), protocol=ProtocolFlag(0x3F))
        writer.write(mta.send(OptionNegotiation(2, ActionFlag(0x2), ProtocolFlag(0x3F))))
        await reader.read(17)
        writer.close()

    with caplog.at_level(logging.INFO, logger="miltrd"):
        asyncio.run(with_daemon(cfg, body))
    assert "the MTA does not offer actions" in caplog.text


def test_header_value_with_a_nul_is_read_to_the_nul_and_the_message_goes_on(
    tmp_path, caplog
) -> None:
    """libmilter reads a header value as a C string; an MTA that sends bytes
    after a NUL must not see its connection closed (its default action would
    then tempfail mail it had already accepted)."""
    cfg, spec = start_config(
        tmp_path,
        chain='[chain]\nplugins = ["echo"]\n[plugins.echo]\nuse = "tests.testplugins:EchoHeader"\n',
    )

    async def body(daemon):
        reader, writer = await open_milter(spec)
        client = MilterClient(reader, writer)
        await client.negotiate()
        mta = client.mta
        replies = []
        for cmd in (
            Connect("h", Family.INET, 1, "192.0.2.1"),
            MailFrom("<a@example.org>"),
            RcptTo("<b@example.com>"),
            Header("X-A", "abcXdef"),
            Header("Subject", "after"),
            EndOfHeaders(),
            BodyChunk(b"text\r\n"),
            EndOfMessage(),
        ):
            if mta.skips(type(cmd)):
                continue
            if isinstance(cmd, Header) and cmd.value == "abcXdef":
                wire = mta.send(cmd).replace(b"abcXdef", b"abc\x00def")
                writer.write(wire)
                while mta.awaiting is not None:  # read its reply, if one is owed
                    event = mta.next_event()
                    if event is NEED_DATA:
                        mta.receive_data(await reader.read(65536))
                    else:
                        replies.append(event)
                continue
            replies += await client.command(cmd)
        await client.close()
        return replies

    with caplog.at_level(logging.INFO, logger="miltrd"):
        replies = asyncio.run(with_daemon(cfg, body))
    assert "protocol error" not in caplog.text
    echoed = [r.value for r in replies if isinstance(r, AddHeaderResponse) and r.name == "X-Echo"]
    assert echoed == ["abc"]
