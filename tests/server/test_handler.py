"""One MTA connection through MilterHandler over a socket pair: what the
MTA receives when a verdict comes from a phase without a reply, and the
progress packets of a slow end of message."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from miltrd.chain import Runtime, build_runtime
from miltrd.config import load_text
from miltrd.mta import Envelope, MilterClient, ReplayResult, replay
from miltrd.protocol import AddHeader, FilterResponse, MtaCommand, Progress, ReplyCode
from miltrd.server import MilterHandler
from miltrd.server import connection as server_connection

from ..testplugins import HeaderWatcher

MESSAGE = b"From: a@example.org\r\nSubject: test\r\n\r\nbody\r\n"
ENV = Envelope(sender="a@example.org", recipients=["b@example.com"], client_ip="192.0.2.1")
# The daemon's on_error answer (tempfail by default).
ON_ERROR_REPLY = ReplyCode(451, ("Temporary failure in mail filter, try again later",), "4.3.0")


def _runtime(plugin: str, options: str = "") -> Runtime:
    return build_runtime(
        load_text(
            f'[chain]\nplugins = ["p"]\n[plugins.p]\nuse = "tests.testplugins:{plugin}"\n{options}'
        )
    )


class RecordingClient(MilterClient):
    """Keeps every response, Progress included."""

    seen: list[FilterResponse]

    async def command(self, cmd: MtaCommand) -> list[FilterResponse]:
        got = await super().command(cmd)
        self.seen = [*getattr(self, "seen", []), *got]
        return got


async def _exchange(
    runtime: Runtime, patch=None
) -> tuple[ReplayResult, MilterHandler, RecordingClient]:
    ours, theirs = socket.socketpair()
    server_reader, server_writer = await asyncio.open_connection(sock=theirs)
    handler = MilterHandler(runtime, "t")
    if patch is not None:
        patch(handler)
    serving = asyncio.ensure_future(handler.serve(server_reader, server_writer))
    reader, writer = await asyncio.open_connection(sock=ours)
    client = RecordingClient(reader, writer)
    try:
        return await replay(client, MESSAGE, ENV), handler, client
    finally:
        await client.close()
        await serving
        await runtime.close()


def test_a_plugin_failure_where_no_reply_is_owed_is_the_next_reply(caplog) -> None:
    HeaderWatcher.eom_calls = 0
    runtime = _runtime("HeaderWatcher", "fail_at_header = true")
    with caplog.at_level(logging.INFO):
        result, _handler, _client = asyncio.run(_exchange(runtime))
    assert "header" not in [name for name, _ in result.steps]  # headers had no reply
    assert result.final == ON_ERROR_REPLY and result.ended_at == "eom"
    assert result.changes == []
    assert HeaderWatcher.eom_calls == 0  # the message was over before its end
    summaries = [r.getMessage() for r in caplog.records if r.name == "miltrd.summary"]
    assert len(summaries) == 1 and "action=tempfail" in summaries[0] and "at header" in summaries[0]


@pytest.mark.parametrize("when", ["at once", "after waiting"])
def test_an_internal_error_where_no_reply_is_owed_is_the_next_reply(caplog, when: str) -> None:
    HeaderWatcher.eom_calls = 0
    runtime = _runtime("HeaderWatcher")

    def break_headers(handler: MilterHandler) -> None:
        # The daemon runs a phase through the chain's header_now: the bug
        # raises there, or in what it hands back when a hook waits.
        async def later() -> None:
            await asyncio.sleep(0)
            raise RuntimeError("bug in the server")

        def boom(name: str, value: str) -> object:
            if when == "at once":
                raise RuntimeError("bug in the server")
            return later()

        handler.chain.header_now = boom  # type: ignore[method-assign, assignment]

    with caplog.at_level(logging.INFO):
        result, _handler, _client = asyncio.run(_exchange(runtime, break_headers))
    assert "internal error handling Header" in caplog.text
    assert result.final == ON_ERROR_REPLY and result.ended_at == "eom"
    assert result.changes == []
    assert HeaderWatcher.eom_calls == 0
    summaries = [r.getMessage() for r in caplog.records if r.name == "miltrd.summary"]
    assert len(summaries) == 1 and "at internal error" in summaries[0]


def test_without_a_failure_the_same_chain_adds_its_header() -> None:
    HeaderWatcher.eom_calls = 0
    result, _handler, _client = asyncio.run(_exchange(_runtime("HeaderWatcher")))
    assert result.action == "accept"
    assert result.changes == [AddHeader("X-Watched", "yes")]
    assert HeaderWatcher.eom_calls == 1


def test_slow_end_of_message_sends_progress_through_the_engine(monkeypatch) -> None:
    monkeypatch.setattr(server_connection, "PROGRESS_INTERVAL", 0.05)
    runtime = _runtime("Slow", "seconds = 0.4")
    result, _handler, client = asyncio.run(_exchange(runtime))
    assert result.action == "accept"
    progress = [r for r in client.seen if isinstance(r, Progress)]
    assert len(progress) >= 3  # one per interval while the plugin works
    assert not isinstance(client.seen[-1], Progress)  # the final reply comes last


def test_plugins_see_the_macros_read_only() -> None:
    # The engine keeps the merged macros for the next merge: a plugin's
    # write must fail, not reach later messages of the connection.
    result, handler, _client = asyncio.run(_exchange(_runtime("HeaderWatcher")))
    assert result.action == "accept"
    macros = handler.conn.macros
    assert macros  # the MTA side sent some
    name = next(iter(macros))
    with pytest.raises(TypeError):
        macros[name] = "forged"  # type: ignore[index]
    assert handler.conn.macro(name) == handler.fc.macros()[name]
