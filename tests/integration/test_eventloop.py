"""``daemon.event_loop``: the daemon serves the same on asyncio's loop and on
uvloop's, says in its start line which one runs, and a config asking for a
loop that is not installed is refused with the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from miltrd.config import ConfigError, load_text
from miltrd.server import eventloop

from ..tools import free_port
from .mta import Miltrd
from .test_lifecycle import config, send

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("choice", "runs"),
    [
        ("asyncio", "asyncio"),
        ("uvloop", "uvloop"),
        ("auto", "uvloop" if eventloop.uvloop_available() else "asyncio"),
    ],
)
def test_each_loop_serves_and_is_named_in_the_start_line(
    tmp_path: Path, choice: str, runs: str
) -> None:
    if runs == "uvloop" and not eventloop.uvloop_available():
        pytest.fail("uvloop is a dependency of miltrd (pyproject.toml) and must be installed")
    port = free_port()
    cfg = config(tmp_path / "m.toml", f"inet:{port}@127.0.0.1", "x", f'event_loop = "{choice}"')
    daemon = Miltrd(cfg, port=port)
    try:
        # Two connections, each a whole message with a header added at end of message.
        assert send(f"inet:{port}@127.0.0.1") == ["x"]
        assert send(f"inet:{port}@127.0.0.1") == ["x"]
    finally:
        assert daemon.stop() == 0
    assert f"event loop {runs}" in daemon.log()


def test_an_unknown_loop_is_refused_with_file_line_and_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_text('[daemon]\nevent_loop = "tokio"\n', "m.toml")
    (problem,) = [str(p) for p in info.value.problems]
    assert problem.startswith("m.toml:2: daemon.event_loop:"), problem


@pytest.mark.parametrize("at", ["mail", "eom"])
@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_sigterm_tempfails_sessions_inside_a_waiting_hook(
    tmp_path: Path, choice: str, at: str
) -> None:
    """SIGTERM while hooks wait past shutdown_timeout: each MTA waiting on
    a reply gets 451 4.3.2 (also one whose end of message is still queued
    behind a no-reply MAIL whose hook waits), one line each, exit 0."""
    if choice == "uvloop" and not eventloop.uvloop_available():
        pytest.fail("uvloop is a dependency of miltrd (pyproject.toml) and must be installed")
    import asyncio
    import signal

    from miltrd.mta import Envelope, MilterClient, open_milter, replay

    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["{spec}"]\nshutdown_timeout = 0.5\nevent_loop = "{choice}"\n'
        '[chain]\nplugins = ["waiter"]\n'
        f'[plugins.waiter]\nuse = "tests.testplugins:Waiter"\nseconds = 60\nat = ["{at}"]\n'
        "timeout = 120\n"
    )
    daemon = Miltrd(cfg, port=port)

    async def one() -> object:
        reader, writer = await open_milter(spec)
        client = MilterClient(reader, writer)
        try:
            env = Envelope(sender="a@example.org", recipients=["b@example.com"])
            return await replay(client, b"From: a@example.org\r\n\r\nbody\r\n", env)
        finally:
            await client.close()

    async def go() -> list[object]:
        sessions = [asyncio.ensure_future(one()) for _ in range(3)]
        await asyncio.sleep(1.0)  # all three inside the hook
        daemon.signal(signal.SIGTERM)
        return list(await asyncio.wait_for(asyncio.gather(*sessions), 30))

    try:
        results = asyncio.run(go())
    finally:
        code = daemon.stop()
    log = daemon.log()
    assert code == 0, log
    for result in results:
        final = result.final  # type: ignore[attr-defined]
        assert (final.code, final.xcode) == (451, "4.3.2"), (result, log)
    assert log.count("session cancelled at shutdown") == 3, log
    assert "Traceback" not in log, log
