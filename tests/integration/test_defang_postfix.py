"""defang through a real Postfix: the notice replaces the banned part, every
other part arrives byte for byte, and the removed file is saved privately."""

from __future__ import annotations

import smtplib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..plugins.test_defang import PDF, PE, mail
from ..tools import free_port, require
from .mta import Miltrd, Postfix, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[Postfix, Sink, Path]]:
    require("postfix", "smtp-sink", "script")
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
