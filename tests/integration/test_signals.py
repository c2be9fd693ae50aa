"""Signals in every state of the process tree, as a real ``miltrd run`` gets them.

Starting, ready, reloading, replacing a worker, draining: a SIGHUP reloads
(or is refused with the old config kept), a SIGTERM drains, and neither
kills a process by its default action. Races are tried many times; each
test failed on the code before the fix in most tries.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from miltrd.mta import Envelope, MilterClient, ReplayResult, open_milter, replay
from miltrd.protocol import ReplyCode

from ..tools import free_port
from .mta import REPO, Miltrd
from .test_lifecycle import MESSAGE, send

pytestmark = pytest.mark.integration


def config(path: Path, listen: str, value: str, daemon: str = "") -> Path:
    path.write_text(
        f'[daemon]\nlisten = ["{listen}"]\n{daemon}\n'
        '[chain]\nplugins = ["stamp", "slow"]\n'
        f'[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\nvalue = "{value}"\n'
        '[plugins.slow]\nuse = "tests.testplugins:Slow"\nseconds = 0.0\n'
        '[plugins.slow.when]\nsender_domains = ["slow.example"]\n'
    )
    return path


def children(pid: int) -> list[int]:
    """The parent's worker pids, read fast (a new worker is caught while it starts)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def slow_config(path: Path, listen: str, workers: int, seconds: float, timeout: float) -> Path:
    path.write_text(
        f'[daemon]\nlisten = ["{listen}"]\nworkers = {workers}\n'
        f"shutdown_timeout = {timeout}\n"
        '[chain]\nplugins = ["slow"]\n'
        f'[plugins.slow]\nuse = "tests.testplugins:Slow"\nseconds = {seconds}\n'
        f"timeout = {seconds + 10}\n"  # slow on purpose: not a plugin timeout
    )
    return path


class Notified:
    """``miltrd run`` with NOTIFY_SOCKET, as systemd starts it."""

    def __init__(self, tmp: Path, cfg: Path) -> None:
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp / "notify"))
        self.notify.settimeout(30)
        self.log_path = tmp / "miltrd.log"
        self.logfile = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "miltrd", "run", "-c", str(cfg)],
            env=dict(os.environ, PYTHONPATH=str(REPO), NOTIFY_SOCKET=str(tmp / "notify")),
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def wait_for(self, prefix: bytes) -> None:
        while not self.notify.recv(4096).startswith(prefix):
            pass

    def log(self) -> str:
        if not self.logfile.closed:
            self.logfile.flush()
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, count: int = 1, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while (log := self.log()).count(text) < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{text!r} not logged {count} times:\n{log}")
            time.sleep(0.05)
        return log

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.logfile.close()
        self.notify.close()
        return code


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_right_after_ready_reloads_every_worker(tmp_path: Path, workers: int) -> None:
    """``systemctl start`` then ``reload`` at once: READY=1 means every worker
    has its handlers, so the SIGHUP reloads them all and kills none."""
    for attempt in range(5):
        tmp = tmp_path / str(attempt)
        tmp.mkdir()
        port = free_port()
        spec = f"inet:{port}@127.0.0.1"
        cfg = config(tmp / "m.toml", spec, "one", f"workers = {workers}")
        daemon = Notified(tmp, cfg)
        try:
            daemon.wait_for(b"READY=1")
            config(cfg, spec, "two", f"workers = {workers}")
            daemon.proc.send_signal(signal.SIGHUP)
            log = daemon.wait_log("reloaded: chain stamp", count=workers)
            assert "exited with" not in log, log
            assert all(send(spec) == ["two"] for _ in range(2 * workers)), daemon.log()
        finally:
            assert daemon.stop() == 0, daemon.log()
        assert "exited with" not in daemon.log()


def test_sighup_to_a_worker_that_is_starting_reloads_it(tmp_path: Path) -> None:
    """A worker replaced after a crash gets a SIGHUP before its handlers are
    in place: it must hold the signal and reload, not die of it."""
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = config(tmp_path / "m.toml", spec, "one", "workers = 2")
    daemon = Miltrd(cfg, port=port)
    try:
        daemon.wait_log("started 2 workers")
        for attempt in range(6):
            before = set(children(daemon.proc.pid))
            os.kill(min(before), signal.SIGKILL)
            deadline = time.monotonic() + 10
            while not (new := set(children(daemon.proc.pid)) - before):
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.0005)
            (pid,) = new
            os.kill(pid, signal.SIGHUP)  # at once: the worker is still starting
            daemon.wait_log("reloaded: chain stamp", count=attempt + 1)
            assert pid in children(daemon.proc.pid), daemon.log()
        assert "exited with -1;" not in daemon.log()  # -1: killed by SIGHUP
        assert send(spec) == ["one"]
    finally:
        assert daemon.stop() == 0


def test_sighup_storm_during_start_reload_and_replacement(tmp_path: Path) -> None:
    """SIGHUPs sent as fast as they come, alternating good and broken configs,
    while workers are being replaced: every process survives, a broken
    config is refused with file, line and key, the last good one serves."""
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = config(tmp_path / "m.toml", spec, "v0", "workers = 2")
    daemon = Miltrd(cfg, port=port)
    try:
        daemon.wait_log("started 2 workers")
        for i in range(1, 41):
            if i % 2:
                cfg.write_text(cfg.read_text().replace("value = ", "value = 7 #"))
            else:
                config(cfg, spec, f"v{i}", "workers = 2")
            daemon.signal(signal.SIGHUP)
            if i % 10 == 0:
                os.kill(min(children(daemon.proc.pid)), signal.SIGKILL)
            time.sleep(0.02)
        log = daemon.wait_log("reload failed: still running with the previous configuration")
        assert re.search(r"m\.toml:\d+: plugins\.stamp\.value: expected a string", log), log
        time.sleep(1.5)  # the last replacement has started and reloaded
        assert all(send(spec) == ["v40"] for _ in range(4)), daemon.log()
        codes = re.findall(r"exited with (-?\d+);", daemon.log())
        assert set(codes) <= {"-9"}, daemon.log()  # only the SIGKILLs we sent
    finally:
        assert daemon.stop() == 0


async def _held_session(spec: str) -> ReplayResult:
    """A message whose end of message the chain takes its time over."""
    reader, writer = await open_milter(spec)
    client = MilterClient(reader, writer)
    try:
        return await replay(client, MESSAGE, Envelope(sender="a@example.org"))
    finally:
        await client.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_refuses_new_connections_at_once(tmp_path: Path, workers: int) -> None:
    """While sessions drain, a new MTA connection is refused, not left hanging."""
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = slow_config(tmp_path / "m.toml", spec, workers, seconds=4, timeout=10)
    daemon = Miltrd(cfg, port=port)

    async def go() -> tuple[float, ReplayResult]:
        if workers > 1:
            await asyncio.to_thread(daemon.wait_log, "started")
        held = asyncio.ensure_future(_held_session(spec))
        await asyncio.sleep(0.5)  # the session is in its end of message
        daemon.signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait_log, "waiting up to")
        start = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            writer.close()
        refused_after = time.monotonic() - start
        assert daemon.proc.poll() is None  # still draining the held session
        return refused_after, await held

    try:
        refused_after, held = asyncio.run(go())
    finally:
        assert daemon.stop() == 0
    assert refused_after < 1.0
    assert held.action == "accept"  # the session open at SIGTERM finished normally


@pytest.mark.parametrize("workers", [1, 2])
def test_shutdown_timeout_logs_one_line_per_cancelled_session(tmp_path: Path, workers: int) -> None:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = slow_config(tmp_path / "m.toml", spec, workers, seconds=60, timeout=1)
    daemon = Miltrd(cfg, port=port)

    async def go() -> list[ReplayResult]:
        if workers > 1:
            await asyncio.to_thread(daemon.wait_log, "started")
        sessions = [asyncio.ensure_future(_held_session(spec)) for _ in range(3)]
        await asyncio.sleep(1.0)
        daemon.signal(signal.SIGTERM)
        return list(await asyncio.gather(*sessions))

    try:
        finals = asyncio.run(go())
    finally:
        assert daemon.stop() == 0
    log = daemon.log()
    cancelled = re.findall(
        r"\[(\S+)\] ([0-9A-F]{10}): session cancelled at shutdown .* in end of message", log
    )
    assert len(cancelled) == 3, log
    assert len({conn for conn, _ in cancelled}) == 3
    assert "Traceback" not in log and "Exception in callback" not in log, log
    # The MTA is told to try later, whatever its milter_default_action says.
    for result in finals:
        assert isinstance(result.final, ReplyCode), finals
        assert (result.final.code, result.final.xcode) == (451, "4.3.2")


def test_workers_drain_and_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the parent (no systemd to kill the rest): the workers must
    not keep serving unsupervised and holding the port; they drain an open
    session and exit, and a new miltrd binds the same address."""
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = slow_config(tmp_path / "m.toml", spec, 2, seconds=1.5, timeout=10)
    daemon = Miltrd(cfg, port=port)
    daemon.wait_log("started 2 workers")
    workers = children(daemon.proc.pid)

    async def go() -> ReplayResult:
        held = asyncio.ensure_future(_held_session(spec))
        await asyncio.sleep(0.5)  # in its end of message
        daemon.signal(signal.SIGKILL)
        return await held

    try:
        held = asyncio.run(go())
        assert held.action == "accept"  # drained, not cut
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in workers):
            assert time.monotonic() < deadline, f"workers {workers} still running"
            time.sleep(0.05)
    finally:
        daemon.stop()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    again = Miltrd(cfg, port=port)
    try:
        again.wait_log("started 2 workers")
    finally:
        assert again.stop() == 0


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("program", ["run", "pymilter"])
def test_sigterm_as_soon_as_the_port_answers_stops_cleanly(tmp_path: Path, program: str) -> None:
    """The socket listens before the event loop has its handlers (and, with
    workers, before they are forked): a SIGTERM then must wait for them and
    stop the daemon with 0, not kill it."""
    for attempt in range(12):
        port = free_port()
        spec = f"inet:{port}@127.0.0.1"
        if program == "run":
            cfg = config(tmp_path / f"m{attempt}.toml", spec, "x")
            cmd = [sys.executable, "-m", "miltrd", "run", "-c", str(cfg)]
        else:
            prog = tmp_path / f"p{attempt}.py"
            prog.write_text(
                "import sys, Milter\nMilter.factory = Milter.Base\n"
                "Milter.runmilter('t', sys.argv[1], 10)\n"
            )
            cmd = [sys.executable, "-m", "miltrd", "pymilter", str(prog), spec]
        proc = subprocess.Popen(
            cmd,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                assert proc.poll() is None and time.monotonic() < deadline
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, f"attempt {attempt}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
