"""The daemon in-process on loopback: listeners, limits, reload, drain."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from pathlib import Path

import pytest

from miltrd.chain import build_runtime
from miltrd.config import load
from miltrd.logs import ContextFilter
from miltrd.mta import Envelope, MilterClient, open_milter, replay
from miltrd.protocol import ReplyCode
from miltrd.server import Daemon, StartupError

from ..testplugins import Slow
from ..tools import free_port

MESSAGE = b"From: a@example.org\r\nSubject: test\r\n\r\nbody\r\n"

CHAIN = """\
[chain]
plugins = ["stamp"]
[plugins.stamp]
use = "tests.testplugins:AddHeader"
value = "{value}"
"""


def write_config(path: Path, listen: str, value: str = "v1", extra: str = "") -> Path:
    path.write_text(
        f'[daemon]\nlisten = ["{listen}"]\nshutdown_timeout = 5.0\n{extra}\n'
        + CHAIN.format(value=value)
    )
    return path


async def start(path: Path) -> Daemon:
    daemon = Daemon(str(path), build_runtime(load(path)))
    await daemon.start()
    return daemon


async def send(spec: str, sender: str = "a@example.org") -> object:
    reader, writer = await open_milter(spec)
    client = MilterClient(reader, writer)
    try:
        return await replay(client, MESSAGE, Envelope(sender=sender, recipients=["b@example.com"]))
    finally:
        await client.close()


def stamps(result) -> list[str]:
    return [c.value for c in result.changes if getattr(c, "name", "") == "X-Test"]


def test_serves_over_inet_and_unix(tmp_path: Path) -> None:
    port = free_port()
    sock_path = tmp_path / "m.sock"
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["inet:{port}@127.0.0.1", "local:{sock_path}"]\nsocket_mode = "0600"\n'
        + CHAIN.format(value="both")
    )

    async def go():
        daemon = await start(cfg)
        try:
            assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
            r1 = await send(f"inet:{port}@127.0.0.1")
            r2 = await send(f"unix:{sock_path}")
            return r1, r2
        finally:
            await daemon.shutdown()

    r1, r2 = asyncio.run(go())
    assert stamps(r1) == stamps(r2) == ["both"]
    assert not sock_path.exists()  # removed at shutdown


def test_stale_unix_socket_is_replaced_live_one_refused(tmp_path: Path) -> None:
    sock_path = tmp_path / "m.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nothing listens: stale
    cfg = write_config(tmp_path / "m.toml", f"local:{sock_path}")

    async def go():
        daemon = await start(cfg)
        try:
            result = await send(f"unix:{sock_path}")
            with pytest.raises(StartupError, match="in use by a running process"):
                await start(cfg)
            return result
        finally:
            await daemon.shutdown()

    assert stamps(asyncio.run(go())) == ["v1"]


def test_max_connections_answers_421_then_serves_again(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "m.toml", f"inet:{port}@127.0.0.1", extra="max_connections = 1")
    spec = f"inet:{port}@127.0.0.1"

    async def go():
        daemon = await start(cfg)
        try:
            reader, writer = await open_milter(spec)
            holder = MilterClient(reader, writer)
            await holder.negotiate()  # one connection open and idle
            busy = await send(spec)
            await holder.close()
            while daemon.tasks:  # wait until the server saw the close
                await asyncio.sleep(0.01)
            after = await send(spec)
            return busy, after
        finally:
            await daemon.shutdown()

    busy, after = asyncio.run(go())
    assert busy.ended_at == "connect"
    assert busy.final == ReplyCode(421, ("Mail filter busy, try again later",), "4.3.2")
    assert stamps(after) == ["v1"]


def test_reload_new_connections_get_the_new_chain_open_ones_keep_theirs(tmp_path: Path) -> None:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = write_config(tmp_path / "m.toml", spec, "old")

    async def go():
        daemon = await start(cfg)
        try:
            reader, writer = await open_milter(spec)
            open_client = MilterClient(reader, writer)
            await open_client.negotiate()  # answered: it is being served on the old runtime
            write_config(cfg, spec, "new")
            assert await daemon.reload()
            fresh = await send(spec)
            across = await replay(open_client, MESSAGE, Envelope(sender="a@x.org"))
            await open_client.close()
            return fresh, across
        finally:
            await daemon.shutdown()

    fresh, across = asyncio.run(go())
    assert stamps(fresh) == ["new"]
    assert stamps(across) == ["old"]


def test_reload_with_a_broken_config_keeps_the_old_one(tmp_path: Path, caplog) -> None:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = write_config(tmp_path / "m.toml", spec, "kept")

    async def go():
        daemon = await start(cfg)
        try:
            cfg.write_text(cfg.read_text() + "\n[deamon]\nbogus = 1\n")
            ok = await daemon.reload()
            return ok, await send(spec)
        finally:
            await daemon.shutdown()

    with caplog.at_level(logging.INFO, logger="miltrd"):
        ok, result = asyncio.run(go())
    assert ok is False
    assert stamps(result) == ["kept"]
    assert "deamon: unknown section" in caplog.text
    assert "still running with the previous configuration" in caplog.text


def test_shutdown_lets_an_open_message_finish(tmp_path: Path) -> None:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["{spec}"]\nshutdown_timeout = 10.0\n'
        '[chain]\nplugins = ["slow", "stamp"]\n'
        '[plugins.slow]\nuse = "tests.testplugins:Slow"\nseconds = 0.5\n'
        '[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\n'
    )

    async def go():
        Slow.inside = asyncio.Event()
        daemon = await start(cfg)
        sending = asyncio.ensure_future(send(spec))
        await asyncio.wait_for(Slow.inside.wait(), 30)  # the message is inside the slow plugin
        await daemon.shutdown()
        return await sending

    result = asyncio.run(go())
    assert result.action == "accept"
    assert stamps(result) == ["added by miltrd"]


def test_shutdown_cancels_sessions_past_the_deadline(tmp_path: Path, caplog) -> None:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["{spec}"]\nshutdown_timeout = 0.2\n'
        '[chain]\nplugins = ["slow"]\n'
        '[plugins.slow]\nuse = "tests.testplugins:Slow"\nseconds = 30\ntimeout = 60\n'
    )

    async def go():
        Slow.inside = asyncio.Event()
        daemon = await start(cfg)
        sending = asyncio.ensure_future(send(spec))
        await asyncio.wait_for(Slow.inside.wait(), 30)
        await daemon.shutdown()
        return await sending

    caplog.handler.addFilter(ContextFilter())  # the queue id, as the daemon's handler adds it
    with caplog.at_level(logging.INFO, logger="miltrd"):
        result = asyncio.run(go())
    assert "cancelling 1 connection(s) still open" in caplog.text
    # The session is told to try later (not left to milter_default_action),
    # and logged once, with its queue id, without a traceback.
    assert result.action == "tempfail"
    assert (result.final.code, result.final.xcode) == (451, "4.3.2")
    lines = [r for r in caplog.records if "session cancelled at shutdown" in r.getMessage()]
    assert len(lines) == 1 and lines[0].qid.strip(": ")  # type: ignore[attr-defined]
    assert "Traceback" not in caplog.text


def test_malformed_packet_closes_only_that_connection(tmp_path: Path, caplog) -> None:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = write_config(tmp_path / "m.toml", spec)

    async def go():
        daemon = await start(cfg)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x7f\xff\xff\xff" + b"O")  # a 2 GiB length field
            await writer.drain()
            closed = await asyncio.wait_for(reader.read(), 5)
            return closed, await send(spec)
        finally:
            await daemon.shutdown()

    with caplog.at_level(logging.INFO, logger="miltrd"):
        closed, result = asyncio.run(go())
    assert closed == b""
    assert stamps(result) == ["v1"]
    assert "protocol error from MTA, closing the connection" in caplog.text


@pytest.mark.parametrize("version", [2, 3, 4, 6])
def test_older_protocol_versions_are_served(tmp_path: Path, version: int) -> None:
    """Postfix's milter_protocol = 2, 3, 4 or 6: the chain still judges mail."""
    from miltrd.protocol import MtaConnection

    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["{spec}"]\n[chain]\nplugins = ["rcpt", "stamp"]\n'
        '[plugins.rcpt]\nuse = "tests.testplugins:RejectRecipient"\nrecipients = ["bad@example.com"]\n'
        '[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\n'
    )

    async def go():
        daemon = await start(cfg)
        try:
            reader, writer = await open_milter(spec)
            client = MilterClient(reader, writer, MtaConnection(version=version))
            result = await replay(
                client,
                MESSAGE,
                Envelope(sender="a@x.org", recipients=["bad@example.com", "ok@example.com"]),
            )
            await client.close()
            return client.mta.negotiated, result
        finally:
            await daemon.shutdown()

    negotiated, result = asyncio.run(go())
    assert negotiated.version == version
    assert list(result.rejected_recipients) == ["bad@example.com"]
    assert stamps(result) == ["added by miltrd"]
