"""Cases 19 and 20 through a real Sendmail: it passes a header line whole up
to 2,040 characters and cuts it there, so miltrd's folding is what keeps a
long defang record whole."""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..tools import free_port, require
from .mta import SENDMAIL_BIN, SMTP_SINK, Miltrd, Sendmail, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration

CASES = Path(__file__).resolve().parents[1] / "cases"
NAME = "Zahlungserinnerung_Rechnung_2024-{:06d}_Kunde_4711_letzte_Mahnung.pdf.exe"


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[Sendmail, Sink]]:
    require(str(SENDMAIL_BIN), "m4", "unshare", SMTP_SINK)
    with world_readable_tmpdir() as base:
        port = free_port()
        cfg = base / "miltrd.toml"
        cfg.write_text(
            f'[daemon]\nlisten = ["inet:{port}@127.0.0.1"]\n[chain]\nplugins = ["defang"]\n'
            f'[plugins.defang]\nsave_dir = "{base}/q"\n'
        )
        miltrd = Miltrd(cfg, port=port)
        sink = Sink(base / "sink")
        sendmail = Sendmail(base / "sm", f"inet:{port}@127.0.0.1", sink.port)
        with running(miltrd, sink, sendmail):
            yield sendmail, sink


def thirty_attachments(subject: str) -> bytes:
    parts = [
        b'--b1\r\nContent-Type: application/octet-stream; name="'
        + NAME.format(i).encode()
        + b'"\r\nContent-Transfer-Encoding: base64\r\n\r\nUGxhY2Vob2xkZXI=\r\n'
        for i in range(1, 31)
    ]
    return (
        (
            f"From: a@example.org\r\nTo: b@example.com\r\nSubject: {subject}\r\n"
            'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        ).encode()
        + b"".join(parts)
        + b"--b1--\r\n"
    )


def test_case_19_thirty_files_arrive_whole_through_sendmail(system) -> None:
    sendmail, sink = system
    with smtplib.SMTP("127.0.0.1", sendmail.smtp_port, timeout=60) as smtp:
        smtp.sendmail("a@example.org", ["b@example.com"], thirty_attachments("case19 sm"))
    got = sink.delivered("case19 sm")
    assert max(len(line) for line in got.replace(b"\r\n", b"\n").split(b"\n")) <= 998
    record = str(email.message_from_bytes(got, policy=email.policy.default)["X-Miltrd-Defang"])
    for i in range(1, 31):
        assert f'removed "{NAME.format(i)}" (file type .exe is not allowed)' in record


def test_case_20_record_is_seven_bit_through_sendmail(system) -> None:
    sendmail, sink = system
    raw = (CASES / "20-8bit-in-added-header-and-reply.eml").read_bytes()
    raw = raw.replace(b"\nSubject: ", b"\nSubject: case20 sm ", 1)
    with smtplib.SMTP("127.0.0.1", sendmail.smtp_port, timeout=60) as smtp:
        smtp.sendmail("a@example.org", ["b@example.com"], raw)
    got = sink.delivered("case20 sm")
    assert got.split(b"\n\n", 1)[0].isascii()
    msg = email.message_from_bytes(got, policy=email.policy.default)
    assert str(msg["X-Miltrd-Defang"]) == (
        'removed "\u0441\u0447\u0435\u0442.exe" (file type .exe is not allowed)'
    )
