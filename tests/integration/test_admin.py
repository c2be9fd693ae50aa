"""``miltrd run`` as an administrator meets it: the listen queue the
kernel shows, the start and stop log lines, and a daemon started as root
that drops to another user."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..tools import free_port, require
from .mta import Miltrd
from .test_lifecycle import config, send


def _send_q(args: list[str], local: str) -> int:
    """The Send-Q column ss shows for a listening socket: its backlog."""
    out = subprocess.run(["ss", "-lnH", *args], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        fields = line.split()
        if local in fields:
            return int(fields[fields.index(local) - 1])
    raise AssertionError(f"{local} not listening:\n{out.stdout}")


def test_backlog_is_the_listen_queue_the_kernel_shows(tmp_path: Path) -> None:
    require("ss")
    port = free_port()
    sock = tmp_path / "m.sock"
    cfg = config(tmp_path / "m.toml", f"inet:{port}@127.0.0.1", "x", extra="backlog = 7")
    text = cfg.read_text().replace(
        f'listen = ["inet:{port}@127.0.0.1"]', f'listen = ["inet:{port}@127.0.0.1", "local:{sock}"]'
    )
    cfg.write_text(text)
    daemon = Miltrd(cfg, port=port)
    try:
        assert send(f"inet:{port}@127.0.0.1") == ["x"]  # serving: asyncio has listened
        assert _send_q(["-t"], f"127.0.0.1:{port}") == 7
        assert _send_q(["-x"], str(sock)) == 7
    finally:
        assert daemon.stop() == 0


def test_start_and_stop_are_logged_with_version_config_pid_signal_and_sessions(
    tmp_path: Path,
) -> None:
    from miltrd import __version__

    port = free_port()
    cfg = config(tmp_path / "m.toml", f"inet:{port}@127.0.0.1", "x")
    daemon = Miltrd(cfg, port=port)
    assert send(f"inet:{port}@127.0.0.1") == ["x"]
    pid = daemon.proc.pid
    assert daemon.stop() == 0
    log = daemon.log()
    assert f"miltrd {__version__} starting: config {cfg}, pid {pid}" in log
    assert "stopping on SIGTERM: 0 session(s) open" in log
    assert "stopped: 0 session(s) drained, 0 cancelled" in log
    assert os.path.exists(cfg)
