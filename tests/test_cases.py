"""The cases of issue 15 through ``miltrd replay``, as an administrator runs it.

Each input is in tests/cases/ (see its README); the right outcome of each
is asserted on what replay prints and on the message it writes.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .tools import free_port

REPO = Path(__file__).resolve().parents[1]
CASES = Path(__file__).parent / "cases"


def replay(
    tmp: Path, case: str, config: str, *, status: int = 0, connect: str | None = None
) -> tuple[str, bytes]:
    """Run ``miltrd replay`` on a case; ``status`` is the exit status its
    verdict gives (0 accept, 5 reject); with ``connect``, through that milter."""
    cfg = tmp / "miltrd.toml"
    cfg.write_text(config)
    out = tmp / "out.eml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "miltrd",
            "replay",
            str(CASES / f"{case}.eml"),
            "--from",
            "a@example.org",
            "--rcpt",
            "b@example.com",
            "--client-ip",
            "192.0.2.10",
            "-c",
            str(cfg),
            "--output",
            str(out),
            *(["--connect", connect] if connect else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=REPO,
    )
    assert result.returncode == status, result.stderr
    return result.stdout, out.read_bytes() if out.exists() else b""


def defang(tmp: Path, extra: str = "") -> str:
    return f'[chain]\nplugins = ["defang"]\n[plugins.defang]\nsave_dir = "{tmp}/q"\n{extra}'


def head_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_case_19_defang_record_is_folded_and_complete(tmp_path: Path) -> None:
    stdout, out = replay(tmp_path, "19-header-line-over-998", defang(tmp_path))
    assert "verdict: accept" in stdout
    assert max(len(line) for line in out.split(b"\r\n")) <= 998
    added = [line for line in head_lines(out) if b"Zahlungserinnerung" in line]
    assert len(added) >= 12 and all(len(line) <= 78 for line in added)
    record = email.message_from_bytes(out, policy=email.policy.default)["X-Miltrd-Defang"]
    for i in range(1, 13):
        name = f"Zahlungserinnerung_Rechnung_2024-{i:06d}_Kunde_4711_letzte_Mahnung.pdf.exe"
        assert f'removed "{name}" (file type .exe is not allowed)' in str(record)


def test_case_20_replace_header_is_seven_bit(tmp_path: Path) -> None:
    stdout, out = replay(tmp_path, "20-8bit-in-added-header-and-reply", defang(tmp_path))
    assert "verdict: accept" in stdout
    head = out.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    record = email.message_from_bytes(out, policy=email.policy.default)["X-Miltrd-Defang"]
    assert str(record) == 'removed "\u0441\u0447\u0435\u0442.exe" (file type .exe is not allowed)'


def test_case_20_reject_reply_is_printable_ascii(tmp_path: Path) -> None:
    stdout, _ = replay(
        tmp_path,
        "20-8bit-in-added-header-and-reply",
        defang(tmp_path, 'action = "reject"'),
        status=5,
    )
    (line,) = [line for line in stdout.splitlines() if line.startswith("eom:")]
    assert (
        line == 'eom: reject 550 5.7.1 Attachment "????.exe" refused: file type .exe is not allowed'
    )
    assert "verdict: reject" in stdout


def wiretap_chain(tmp: Path, copy: str, listen: str = "") -> str:
    return (
        (f'[daemon]\nlisten = ["{listen}"]\n' if listen else "")
        + '[chain]\nplugins = ["defang", "wiretap"]\n'
        + f'[plugins.defang]\nsave_dir = "{tmp}/q"\n'
        + f'[plugins.wiretap]\nroot = "{tmp}/archive"\ncopy = "{copy}"\n'
        + '[[plugins.wiretap.archive]]\npath = "all"\n'
    )


def archived(tmp: Path) -> bytes:
    (copy,) = (tmp / "archive" / "all" / "new").iterdir()
    envelope, _, message = copy.read_bytes().partition(b"X-Miltrd-Direction: incoming\r\n")
    assert b"X-Miltrd-Envelope-To: <b@example.com>" in envelope
    return message


@contextlib.contextmanager
def daemon(tmp: Path, copy: str) -> Iterator[str]:
    """``miltrd run`` with the case-21 chain (replay itself writes nothing:
    it is a dry run), for ``miltrd replay --connect``."""
    from .integration.mta import Miltrd

    port = free_port()
    spec = f"inet:{port}@127.0.0.1"
    cfg = tmp / "daemon.toml"
    cfg.write_text(wiretap_chain(tmp, copy, spec))
    miltrd = Miltrd(cfg, port=port)
    try:
        yield spec
    finally:
        miltrd.stop()


def test_case_21_replay_says_it_would_archive(tmp_path: Path) -> None:
    stdout, _ = replay(
        tmp_path, "21-wiretap-copy-after-body-change", wiretap_chain(tmp_path, "received")
    )
    assert "replace body" in stdout  # defang did replace the program
    assert "would have archived" in stdout
    assert not (tmp_path / "archive").exists()  # a dry run


def test_case_21_archive_as_received_is_the_message_received(tmp_path: Path) -> None:
    with daemon(tmp_path, "received") as spec:
        stdout, _ = replay(tmp_path, "21-wiretap-copy-after-body-change", "", connect=spec)
    assert "replace body" in stdout
    received = (CASES / "21-wiretap-copy-after-body-change.eml").read_bytes()
    assert archived(tmp_path) == received.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    copy = email.message_from_bytes(archived(tmp_path), policy=email.policy.default)
    assert copy.get_filename() == "tool.exe"
    assert copy.get_payload(decode=True).startswith(b"MZ")  # the program, whole


def test_case_21_archive_as_delivered_is_the_message_delivered(tmp_path: Path) -> None:
    with daemon(tmp_path, "delivered") as spec:
        _, delivered = replay(tmp_path, "21-wiretap-copy-after-body-change", "", connect=spec)
    copy = archived(tmp_path)
    assert copy == delivered
    msg = email.message_from_bytes(copy, policy=email.policy.default)
    assert msg.get_content_type() == "text/plain"
    assert "tool.exe" in msg.get_content() and "was removed" in msg.get_content()
