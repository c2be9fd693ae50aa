"""defang through a real Postfix: the notice replaces the banned part, every
other part arrives byte for byte, and the removed file is saved privately."""

from __future__ import annotations

import base64
import binascii
import re
import smtplib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..plugins.test_defang import PDF, PE, mail
from ..tools import free_port, require
from .mta import POSTFIX, SMTP_SINK, Miltrd, Postfix, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[Postfix, Sink, Path]]:
    require(POSTFIX, SMTP_SINK, "script")
    with world_readable_tmpdir() as base:
        port = free_port()
        saved = base / "quarantine"
        cfg = base / "miltrd.toml"
        cfg.write_text(
            f'[daemon]\nlisten = ["inet:{port}@127.0.0.1"]\n'
            f'[chain]\nplugins = ["defang"]\n[plugins.defang]\nsave_dir = "{saved}"\n'
        )
        miltrd = Miltrd(cfg, port=port)
        sink = Sink(base / "sink")
        postfix = Postfix(base / "pf", f"inet:127.0.0.1:{port}", sink.port)
        with running(miltrd, sink, postfix):
            yield postfix, sink, saved


def test_banned_attachment_replaced_others_byte_identical(system) -> None:
    postfix, sink, saved = system
    raw = mail((PDF, "application/pdf", "report.pdf"), (PE, "application/octet-stream", "tool.exe"))
    raw = raw.replace(b"Subject: corpus", b"Subject: defang e2e")
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
        smtp.sendmail("a@example.org", ["b@example.com"], raw)
    # smtp-sink writes what it received with LF line ends.
    got = sink.delivered("defang e2e").replace(b"\r\n", b"\n")
    raw = raw.replace(b"\r\n", b"\n")
    # The text part and the PDF part, headers and encoded bytes, unchanged.
    body = raw.split(b"\n\n", 1)[1]
    boundary = body.split(b"\n", 1)[0]
    parts = body.split(boundary)
    text_part, pdf_part, exe_part = parts[1], parts[2], parts[3]
    assert text_part in got and pdf_part in got
    assert exe_part not in got and b"TVq" not in got.split(b"X-Miltrd-Defang")[1]
    assert b'X-Miltrd-Defang: removed "tool.exe" (file type .exe is not allowed)' in got
    assert b"was removed by the mail filter" in got.replace(b"=\n", b"")
    (copy,) = [p for p in saved.rglob("*.bin")]
    assert copy.read_bytes() == PE
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700


CASES = Path(__file__).resolve().parents[1] / "cases"  # copies of the issue's inputs


def _decodings(data: bytes, depth: int = 4) -> list[bytes]:
    """``data`` and what every base64 run in it decodes to, recursively."""
    out = [data]
    if depth:
        for run in re.findall(rb"(?:^[A-Za-z0-9+/=]{8,}\r?\n)+", data, re.MULTILINE):
            out += _decodings(base64.b64decode(re.sub(rb"\s", b"", run) + b"=="), depth - 1)
    return out


def _send(postfix: Postfix, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
        smtp.sendmail("a@example.org", ["b@example.com"], raw)


@pytest.mark.parametrize(
    ("case", "subject", "name"),
    [
        ("16-unindented-param-line", b"Invoice 2024-117", "invoice.exe"),
        ("17-base64-message-rfc822", b"Fwd: tool", "setup.exe"),
    ],
)
def test_issue_15_cases_through_postfix(system, case: str, subject: bytes, name: str) -> None:
    postfix, sink, _saved = system
    raw = (CASES / f"{case}.eml").read_bytes()
    tagged = raw.replace(b"Subject: " + subject, b"Subject: " + subject + b" " + case.encode())
    _send(postfix, tagged)
    got = sink.delivered(f"{subject.decode()} {case}").replace(b"\r\n", b"\n")
    assert f'X-Miltrd-Defang: removed "{name}"'.encode() in got
    # No program anywhere, however deep the base64 layers go.
    assert not any(b"MZ\x90" in layer for layer in _decodings(got))
    assert b"TVqQ" not in got.split(b"\n\n", 1)[1]


def test_uuencoded_program_in_a_text_body_through_postfix(system) -> None:
    postfix, sink, _saved = system
    block = (
        b"begin 644 tool.exe\r\n"
        + b"".join(
            binascii.b2a_uu(PE[i : i + 45]).replace(b"\n", b"\r\n") for i in range(0, len(PE), 45)
        )
        + b"`\r\nend\r\n"
    )
    raw = (
        b"From: a@example.org\r\nTo: b@example.com\r\nSubject: uu e2e\r\n\r\n"
        b"Here it is:\r\n\r\n" + block + b"\r\nCheers\r\n"
    )
    _send(postfix, raw)
    got = sink.delivered("uu e2e").replace(b"\r\n", b"\n")
    assert b'X-Miltrd-Defang: removed "tool.exe"' in got
    body = got.split(b"\n\n", 1)[1]
    assert b"begin 644" not in body and b"Here it is:" in body and b"Cheers" in body
    assert b"was removed by the mail filter" in body
