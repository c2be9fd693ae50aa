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
