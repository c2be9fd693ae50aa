"""``miltrd run`` as a real process: signals, sd_notify, privilege drop, miltertest."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from miltrd.mta import Envelope, MilterClient, open_milter, replay

from ..tools import free_port, require
from .mta import REPO, Miltrd

pytestmark = pytest.mark.integration

MESSAGE = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


def config(path: Path, listen: str, value: str, extra: str = "") -> Path:
    path.write_text(
        f'[daemon]\nlisten = ["{listen}"]\nshutdown_timeout = 10.0\n{extra}\n'
        '[chain]\nplugins = ["stamp"]\n'
        f'[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\nvalue = "{value}"\n'
    )
    return path


async def _send(spec: str) -> list[str]:
    reader, writer = await open_milter(spec)
    client = MilterClient(reader, writer)
    try:
        result = await replay(client, MESSAGE, Envelope(sender="a@example.org"))
    finally:
        await client.close()
    return [c.value for c in result.changes if getattr(c, "name", "") == "X-Test"]


def send(spec: str) -> list[str]:
    return asyncio.run(_send(spec))


def test_sighup_broken_config_keeps_serving_old_chain(tmp_path: Path) -> None:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = config(tmp_path / "m.toml", spec, "one")
    daemon = Miltrd(cfg, port=port)
    try:
        assert send(spec) == ["one"]
        cfg.write_text(cfg.read_text().replace('value = "one"', "value = 42"))
        daemon.signal(signal.SIGHUP)
        log = daemon.wait_log("still running with the previous configuration")
        assert "plugins.stamp.value: expected a string, got 42" in log
        assert f"{cfg}:" in log  # the problem names the file
        assert send(spec) == ["one"]
        config(cfg, spec, "two")
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("reloaded: chain stamp")
        assert send(spec) == ["two"]
    finally:
        assert daemon.stop() == 0


def test_session_open_across_sighup_finishes_on_the_old_chain(tmp_path: Path) -> None:
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = config(tmp_path / "m.toml", spec, "before")
    daemon = Miltrd(cfg, port=port)

    async def go() -> tuple[list[str], list[str]]:
        reader, writer = await open_milter(spec)
        client = MilterClient(reader, writer)
        await client.negotiate()
        config(cfg, spec, "after")
        daemon.signal(signal.SIGHUP)
        await asyncio.to_thread(daemon.wait_log, "reloaded: chain stamp")
        result = await replay(client, MESSAGE, Envelope(sender="a@example.org"))
        await client.close()
        old = [c.value for c in result.changes if getattr(c, "name", "") == "X-Test"]
        return old, await _send(spec)

    try:
        old, new = asyncio.run(go())
        assert old == ["before"]
        assert new == ["after"]
    finally:
        assert daemon.stop() == 0


def test_sigterm_removes_the_unix_socket_and_exits_0(tmp_path: Path) -> None:
    sock = tmp_path / "miltrd.sock"
    cfg = config(tmp_path / "m.toml", f"local:{sock}", "x")
    daemon = Miltrd(cfg, unix_path=str(sock))
    assert send(f"unix:{sock}") == ["x"]
    assert daemon.stop() == 0
    assert not sock.exists()
    assert "stopped" in daemon.log()


def test_sd_notify_ready_reloading_stopping(tmp_path: Path) -> None:
    notify_path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(20)
    port = free_port()
    cfg = config(tmp_path / "m.toml", f"inet:{port}@127.0.0.1", "x")
    env = dict(os.environ, PYTHONPATH=str(REPO), NOTIFY_SOCKET=str(notify_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "miltrd", "run", "-c", str(cfg)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert listener.recv(4096).startswith(b"READY=1")
        proc.send_signal(signal.SIGHUP)
        assert listener.recv(4096) == b"RELOADING=1"
        assert listener.recv(4096).startswith(b"READY=1")
        proc.send_signal(signal.SIGTERM)
        assert listener.recv(4096) == b"STOPPING=1"
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()


def test_started_as_root_drops_to_the_configured_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start as root")
    tmp_path.chmod(0o755)
    sock = tmp_path / "miltrd.sock"
    cfg = config(tmp_path / "m.toml", f"local:{sock}", "x", extra='user = "nobody"')
    cfg.chmod(0o644)
    daemon = Miltrd(cfg, unix_path=str(sock))
    try:
        assert send(f"unix:{sock}") == ["x"]
        status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        gid_line = next(line for line in status.splitlines() if line.startswith("Gid:"))
        groups = next(line for line in status.splitlines() if line.startswith("Groups:"))
        nobody = pwd.getpwnam("nobody")
        assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
        assert gid_line.split()[1:] == [str(nobody.pw_gid)] * 4
        assert groups.split()[1:] == []  # no supplementary (root) groups left
        # The socket is the user's and its group's, as if that user had made it.
        assert (os.stat(sock).st_uid, os.stat(sock).st_gid) == (nobody.pw_uid, nobody.pw_gid)
    finally:
        daemon.stop()


def test_miltertest_against_the_daemon(tmp_path: Path) -> None:
    require("miltertest")
    port = free_port()
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["inet:{port}@127.0.0.1"]\n'
        '[chain]\nplugins = ["rcpt", "stamp", "upper"]\n'
        '[plugins.rcpt]\nuse = "tests.testplugins:RejectRecipient"\n'
        'recipients = ["bad@example.com"]\n'
        '[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\nname = "X-Stamp"\nvalue = "yes"\n'
        '[plugins.upper]\nuse = "tests.testplugins:UpperBody"\n'
    )
    daemon = Miltrd(cfg, port=port)
    try:
        result = subprocess.run(
            [
                "miltertest",
                "-D",
                f"sock=inet:{port}@127.0.0.1",
                "-s",
                str(Path(__file__).parent / "daemon.lua"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr + daemon.log()
        assert "daemon.lua: all checks passed" in result.stdout
    finally:
        daemon.stop()


def test_systemd_socket_activation(tmp_path: Path) -> None:
    port = free_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    # The config names another port: the socket passed by "systemd" wins.
    cfg = config(tmp_path / "m.toml", f"inet:{free_port()}@127.0.0.1", "activated")
    fd = listener.fileno()

    def as_fd_3() -> None:
        os.dup2(fd, 3)

    proc = subprocess.Popen(
        [
            "sh",
            "-c",
            f'LISTEN_PID=$$ LISTEN_FDS=1 exec "{sys.executable}" -m miltrd run -c "{cfg}"',
        ],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        preexec_fn=as_fd_3,
        pass_fds=(fd, 3),
        stderr=subprocess.PIPE,
    )
    listener.close()  # only the child holds it now
    try:
        assert send(f"inet:{port}@127.0.0.1") == ["activated"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert b"using 1 socket(s) passed by systemd" in err
    assert proc.returncode == 0


def test_version_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "miltrd", "version"], capture_output=True, text=True, check=True
    )
    assert re.fullmatch(r"miltrd \d+\.\d+\.\d+\n", out.stdout)


def test_syslog_facility_mail(tmp_path: Path) -> None:
    log_sock = tmp_path / "log"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(log_sock))
    receiver.settimeout(10)
    port = free_port()
    cfg = config(
        tmp_path / "m.toml",
        f"inet:{port}@127.0.0.1",
        "x",
        extra=f'log = "syslog"\nsyslog_socket = "{log_sock}"',
    )
    daemon = Miltrd(cfg, port=port)
    try:
        assert send(f"inet:{port}@127.0.0.1") == ["x"]
        lines = []
        while not any(b"summary client=" in line for line in lines):
            lines.append(receiver.recv(65536))
    finally:
        daemon.stop()
        receiver.close()
    summary = next(line for line in lines if b"summary client=" in line)
    # <22>: facility mail (2) * 8 + severity info (6)
    assert summary.startswith(b"<22>miltrd[")
