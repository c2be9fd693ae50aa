"""``miltrd run`` as an administrator meets it: the listen queue the
kernel shows, the start and stop log lines, and a daemon started as root
that drops to another user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..tools import free_port, require, wait_for_port
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
    try:
        assert send(f"inet:{port}@127.0.0.1") == ["x"]
    finally:
        code = daemon.stop()
    pid = daemon.proc.pid
    assert code == 0
    log = daemon.log()
    assert f"miltrd {__version__} starting: config {cfg}, pid {pid}" in log
    assert "stopping on SIGTERM: 0 session(s) open" in log
    assert "stopped: 0 session(s) drained, 0 cancelled" in log
    assert os.path.exists(cfg)


@pytest.mark.parametrize("workers", [1, 2])
def test_start_up_objects_are_kept_out_of_full_garbage_collections(
    tmp_path: Path, workers: int
) -> None:
    """Each serving process freezes what it loaded before it serves: a full
    collection would otherwise walk it all again, a pause of about 20 ms in
    which no reply goes out (bench --mixed)."""
    import re

    port = free_port()
    extra = f'log_level = "debug"\nworkers = {workers}'
    cfg = config(tmp_path / "m.toml", f"inet:{port}@127.0.0.1", "x", extra=extra)
    daemon = Miltrd(cfg, port=port)
    try:
        assert send(f"inet:{port}@127.0.0.1") == ["x"]
    finally:
        assert daemon.stop() == 0
    frozen = [
        int(n)
        for n in re.findall(
            r"(\d+) objects of the start-up kept out of the garbage collector", daemon.log()
        )
    ]
    assert len(frozen) == workers
    # The modules alone are tens of thousands of objects.
    assert min(frozen) > 10_000


def _started_as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start as root")


def _leftover_processes(cfg: Path) -> list[str]:
    """Processes still running with this config (a helper left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(cfg).encode() in cmdline:
            found.append(proc.name)
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_started_as_root_it_removes_its_socket_after_the_drop_and_exits_0(
    tmp_path: Path, workers: int
) -> None:
    _started_as_root()
    tmp_path.chmod(0o755)  # root's: the user miltrd drops to cannot remove files here
    sock = tmp_path / "miltrd.sock"
    cfg = config(
        tmp_path / "m.toml", f"local:{sock}", "x", extra=f'user = "nobody"\nworkers = {workers}'
    )
    cfg.chmod(0o644)
    daemon = Miltrd(cfg, unix_path=str(sock))
    try:
        assert send(f"unix:{sock}") == ["x"]
    finally:
        code = daemon.stop()
    log = daemon.log()
    assert code == 0, log
    assert not sock.exists(), log
    assert "cannot remove" not in log and "Traceback" not in log
    assert "stopped" in log
    assert _leftover_processes(cfg) == []


LAUNCHER = """\
import os
import sys


def refuse_after_the_drop(event, args):
    # What an installation the dropped user cannot read does to an import.
    if event == "import" and os.geteuid() != 0:
        sys.stderr.write(f"IMPORT AFTER PRIVILEGE DROP: {args[0]}\\n")
        sys.stderr.flush()
        raise ModuleNotFoundError(f"No module named {args[0]!r}")


sys.addaudithook(refuse_after_the_drop)
import miltrd.cli

sys.stderr.write(f"miltrd from {miltrd.cli.__file__}\\n")
sys.exit(miltrd.cli.main(sys.argv[1:]))
"""


def test_serving_needs_nothing_the_dropped_user_cannot_read(tmp_path: Path) -> None:
    """The daemon runs from a copy of miltrd only root can read (0700), with
    an interpreter that refuses every import once it is not root; real
    messages go through spf (a real DNS server), defang and wiretap."""
    _started_as_root()
    import base64
    import pwd
    import shutil
    import tempfile

    from ..dnsserver import dns_server
    from .mta import REPO

    install = tmp_path / "install"
    install.mkdir(mode=0o700)
    for package in ("miltrd", "plugins"):
        shutil.copytree(
            REPO / package, install / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (install / "launch.py").write_text(LAUNCHER)
    nobody = pwd.getpwnam("nobody")
    spool = Path(tempfile.mkdtemp(prefix="miltrd-spool-"))
    os.chown(spool, nobody.pw_uid, nobody.pw_gid)
    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    try:
        with dns_server() as dns_port:
            cfg = tmp_path / "m.toml"
            cfg.write_text(
                f'[daemon]\nlisten = ["{spec}"]\nuser = "nobody"\nshutdown_timeout = 10.0\n'
                '[internal]\nnetworks = ["10.0.0.0/8"]\ndomains = ["corp.test"]\n'
                '[chain]\nplugins = ["zombie", "spf", "bcc", "defang", "wiretap"]\n'
                f'[plugins.spf]\nnameservers = ["127.0.0.1:{dns_port}"]\ndns_timeout = 3.0\n'
                '[[plugins.bcc.rules]]\ndirection = ["outgoing"]\n'
                'copy_to = ["sent@corp.test"]\n'
                f'[plugins.defang]\nsave_dir = "{spool}/quarantine"\n'
                f'[plugins.wiretap]\nroot = "{spool}/archive"\n'
                '[[plugins.wiretap.archive]]\npath = "{direction}/{user}"\n'
            )
            proc = subprocess.Popen(
                [sys.executable, str(install / "launch.py"), "run", "-c", str(cfg)],
                stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / "m.log", "wb"),  # noqa: SIM115
                env=dict(os.environ, PYTHONPATH=str(install)),
                cwd="/",
            )
            try:
                wait_for_port(port, timeout=30)
                _wait_for(tmp_path / "m.log", "listening on", proc)
                status = Path(f"/proc/{proc.pid}/status").read_text()
                assert f"Uid:\t{nobody.pw_uid}\t" in status
                exe = base64.encodebytes(b"MZ" + b"\x90" * 58 + b"\x40\0\0\0PE\0\0" + b"\0" * 64)
                mail = (
                    "From: =?iso-8859-2?q?Pawe=B3?= <a@corp.test>\nSubject: =?koi8-r?b?8NLJ18XU?=\n"
                    'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n'
                    '--b\nContent-Type: text/plain; charset="iso-8859-2"\n'
                    "Content-Transfer-Encoding: quoted-printable\n\nZa=BF=F3=B3=E6\n"
                    '--b\nContent-Type: application/octet-stream; name="setup.exe"\n'
                    "Content-Transfer-Encoding: base64\n\n" + exe.decode() + "--b--\n"
                ).encode()
                actions = [
                    _replay(spec, mail, "192.0.2.55", "a@example.org", "b@corp.test"),
                    _replay(spec, mail, "10.1.2.3", "a@corp.test", "c@elsewhere.example"),
                    _replay(spec, mail, "10.1.2.3", "a@corp.test", "d@corp.test"),
                ]
            finally:
                proc.terminate()
                code = proc.wait(timeout=30)
    finally:
        log = (tmp_path / "m.log").read_text(errors="replace")
        archived = sorted(p.name for p in (spool / "archive").rglob("*") if p.is_dir())
        shutil.rmtree(spool)
    assert f"miltrd from {install}/miltrd/cli/__init__.py" in log
    assert "IMPORT AFTER PRIVILEGE DROP" not in log, log
    assert actions == ["accept", "accept", "accept"], log
    assert "spf: mailfrom=a@example.org domain=example.org result=pass" in log
    assert "defang: setup.exe" in log
    assert {"incoming", "outgoing", "internal"} <= set(archived), log
    assert code == 0, log


def _replay(spec: str, mail: bytes, ip: str, sender: str, rcpt: str) -> str:
    import asyncio

    from miltrd.mta import Envelope, MilterClient, open_milter, replay

    async def go() -> str:
        reader, writer = await open_milter(spec)
        client = MilterClient(reader, writer)
        try:
            env = Envelope(sender=sender, recipients=[rcpt], client_ip=ip, client_name="c.test")
            return (await replay(client, mail, env)).action
        finally:
            await client.close()

    return asyncio.run(go())


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    import time

    deadline = time.monotonic() + 30
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
