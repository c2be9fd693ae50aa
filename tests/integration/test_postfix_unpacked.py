"""Postfix run from Debian's package unpacked beside the project, not installed.

On a host whose MTA is not Postfix, installing postfix would replace it, so
scripts/install-test-deps.sh unpacks the package into .cache/postfix/root
(apt-get download, dpkg-deb -x) and the tests run it from there. This test
runs that tree on every machine, whether or not a system postfix exists:
its master and its chrooted smtpd are the tree's programs with the tree's
libpostfix libraries (not /usr/lib/postfix's), and a message passes through
miltrd on a unix socket and is delivered. The whole Postfix suite runs the
same way with ``MILTRD_TEST_POSTFIX=unpacked``.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
from pathlib import Path

import pytest

from ..tools import require
from .mta import POSTFIX_ROOT, REPO, Miltrd, Postfix, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration


def _postfix_pids(base: Path, name: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            environ = Path(f"/proc/{pid}/environ").read_text(errors="replace")
        except OSError:
            continue
        # Postfix's daemons get the instance's config directory as MAIL_CONFIG.
        if comm == name and f"MAIL_CONFIG={base}" in environ:
            found.append(pid)
    return found


def _libpostfix(pid: str) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {line.split()[-1] for line in maps.splitlines() if "libpostfix-" in line}


@pytest.fixture
def unpacked(monkeypatch: pytest.MonkeyPatch) -> Path:
    if not (POSTFIX_ROOT / "usr/sbin/postfix").exists():
        # What install-test-deps.sh does; needs only apt's package lists.
        subprocess.run(
            [str(REPO / "scripts/unpack-deb.sh"), str(POSTFIX_ROOT.parent), "postfix"],
            capture_output=True,
            timeout=300,
        )
    require(str(POSTFIX_ROOT / "usr/sbin/postfix"), "script")
    monkeypatch.setenv("MILTRD_TEST_POSTFIX", "unpacked")
    return POSTFIX_ROOT


def test_unpacked_postfix_delivers_through_miltrd(unpacked: Path) -> None:
    with world_readable_tmpdir() as base:
        sink = Sink(base / "sink")
        # Relative to the queue directory, where the chrooted smtpd lives.
        postfix = Postfix(base / "pf", "unix:miltrd/miltrd.sock", sink.port, chroot=True)
        with running(sink, postfix):
            sock = base / "pf/queue/miltrd/miltrd.sock"
            sock.parent.mkdir()
            cfg = base / "miltrd.toml"
            cfg.write_text(f'[daemon]\nlisten = ["local:{sock}"]\nsocket_mode = "0666"\n')
            miltrd = Miltrd(cfg, unix_path=str(sock))
            with running(miltrd):
                with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
                    smtp.sendmail(
                        "alice@example.org",
                        ["bob@example.com"],
                        b"From: alice@example.org\r\nSubject: unpacked\r\n\r\nhi\r\n",
                    )
                assert b"Subject: unpacked" in sink.delivered("unpacked")
                assert "from=<alice@example.org>" in miltrd.wait_log("summary")
            conf = base / "pf" / "conf"
            for name in ("master", "smtpd"):
                pids = _postfix_pids(conf, name)
                assert pids, f"no {name} of the instance in {conf}"
                for pid in pids:
                    exe = os.readlink(f"/proc/{pid}/exe")
                    assert exe == f"{unpacked}/usr/lib/postfix/sbin/{name}", exe
                    libs = _libpostfix(pid)
                    assert libs and all(lib.startswith(f"{unpacked}/") for lib in libs), libs
            smtpd_roots = {os.readlink(f"/proc/{pid}/root") for pid in _postfix_pids(conf, "smtpd")}
            assert smtpd_roots == {str(base / "pf/queue")}
