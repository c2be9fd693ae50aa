"""workers = N and max_messages: pre-forked processes on the same listeners."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from ..tools import free_port
from .mta import Miltrd
from .test_lifecycle import send

pytestmark = pytest.mark.integration


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def config(path: Path, listen: str, value: str, daemon: str) -> Path:
    path.write_text(
        f'[daemon]\nlisten = ["{listen}"]\n{daemon}\n'
        '[chain]\nplugins = ["stamp"]\n'
        f'[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\nvalue = "{value}"\n'
    )
    return path


def test_workers_serve_reload_and_stop_together(tmp_path: Path) -> None:
    sock = tmp_path / "m.sock"
    cfg = config(tmp_path / "m.toml", f"local:{sock}", "one", "workers = 3")
    daemon = Miltrd(cfg, unix_path=str(sock))
    try:
        daemon.wait_log("started 3 workers")
        assert len(children(daemon.proc.pid)) == 3
        assert all(send(f"unix:{sock}") == ["one"] for _ in range(6))
        # A broken config is refused once, by the parent.
        cfg.write_text(cfg.read_text().replace('value = "one"', "value = 1"))
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("still running with the previous configuration")
        assert send(f"unix:{sock}") == ["one"]
        config(cfg, f"local:{sock}", "two", "workers = 3")
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("reload passed to 3 workers")
        daemon.wait_log("reloaded: chain stamp", count=3)  # every worker reloaded
        assert all(send(f"unix:{sock}") == ["two"] for _ in range(6))
    finally:
        assert daemon.stop() == 0
    assert not sock.exists()
    assert daemon.log().count("stopped") >= 4  # three workers and the parent


def test_worker_is_replaced_after_max_messages(tmp_path: Path) -> None:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = config(tmp_path / "m.toml", spec, "x", "workers = 1\nmax_messages = 2")
    daemon = Miltrd(cfg, port=port)
    try:
        first = children(daemon.proc.pid)
        assert all(send(spec) == ["x"] for _ in range(5))
        daemon.wait_log("retired after its message limit")
        assert children(daemon.proc.pid) != first
    finally:
        assert daemon.stop() == 0
