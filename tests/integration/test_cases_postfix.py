"""The cases of issue 15 through a real Postfix: what the SMTP client and
the next hop see. One Postfix and one miltrd serve every case; which
defang entry applies is chosen by recipient (``when``)."""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..tools import free_port, require
from .mta import POSTFIX, SMTP_SINK, Miltrd, Postfix, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration

CASES = Path(__file__).resolve().parents[1] / "cases"


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[Postfix, Sink, Path]]:
    require(POSTFIX, SMTP_SINK, "script")
    with world_readable_tmpdir() as base:
        port = free_port()
        cfg = base / "miltrd.toml"
        cfg.write_text(
            f'[daemon]\nlisten = ["inet:{port}@127.0.0.1"]\n'
            '[chain]\nplugins = ["refuse", "defang", "wiretap", "tap2"]\n'
            f'[plugins.refuse]\nuse = "defang"\naction = "reject"\nsave_dir = "{base}/q"\n'
            '[plugins.refuse.when]\nrecipients = ["reject@example.com"]\n'
            f'[plugins.defang]\nsave_dir = "{base}/q"\n'
            f'[plugins.wiretap]\nroot = "{base}/received"\n'
            '[[plugins.wiretap.archive]]\npath = "all"\nrecipients = ["tap@example.com"]\n'
            f'[plugins.tap2]\nuse = "wiretap"\nroot = "{base}/delivered"\ncopy = "delivered"\n'
            '[[plugins.tap2.archive]]\npath = "all"\nrecipients = ["tap@example.com"]\n'
        )
        miltrd = Miltrd(cfg, port=port)
        sink = Sink(base / "sink")
        postfix = Postfix(base / "pf", f"inet:127.0.0.1:{port}", sink.port)
        with running(miltrd, sink, postfix):
            yield postfix, sink, base


def send(postfix: Postfix, case: str, subject: str, rcpt: str = "b@example.com") -> None:
    raw = (CASES / f"{case}.eml").read_bytes()
    raw = raw.replace(b"\nSubject: ", f"\nSubject: {subject} ".encode(), 1)
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
        smtp.sendmail("a@example.org", [rcpt], raw)


def test_case_19_record_arrives_folded_and_whole(system) -> None:
    postfix, sink, _ = system
    send(postfix, "19-header-line-over-998", "case19")
    got = sink.delivered("case19 Reminders")
    assert max(len(line) for line in got.split(b"\n")) <= 998
    msg = email.message_from_bytes(got, policy=email.policy.default)
    record = str(msg["X-Miltrd-Defang"])
    for i in range(1, 13):
        name = f"Zahlungserinnerung_Rechnung_2024-{i:06d}_Kunde_4711_letzte_Mahnung.pdf.exe"
        assert f'removed "{name}" (file type .exe is not allowed)' in record
    # Postfix kept miltrd's folds: no line of the record passes 78
    head = got.split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
    start = head.index(b"X-Miltrd-Defang:")
    first, *rest = head[start:].split(b"\n")
    record_lines = [first]
    for line in rest:
        if line[:1] not in (b" ", b"\t"):
            break
        record_lines.append(line)
    assert len(record_lines) > 12 and all(len(line) <= 78 for line in record_lines)


def test_case_20_replace_record_is_seven_bit(system) -> None:
    postfix, sink, _ = system
    send(postfix, "20-8bit-in-added-header-and-reply", "case20")
    got = sink.delivered("case20 Invoice")
    assert got.split(b"\n\n", 1)[0].isascii()
    msg = email.message_from_bytes(got, policy=email.policy.default)
    assert str(msg["X-Miltrd-Defang"]) == (
        'removed "\u0441\u0447\u0435\u0442.exe" (file type .exe is not allowed)'
    )


def test_case_20_reject_text_is_printable_ascii(system) -> None:
    postfix, _, _ = system
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(postfix, "20-8bit-in-added-header-and-reply", "case20r", rcpt="reject@example.com")
    assert refused.value.smtp_code == 550
    text = refused.value.smtp_error
    assert text.isascii() and all(32 <= b < 127 for b in text)
    assert text == b'5.7.1 Attachment "????.exe" refused: file type .exe is not allowed'


def archived(base: Path, kind: str) -> bytes:
    (copy,) = (base / kind / "all" / "new").iterdir()
    data = copy.read_bytes()
    start = data.index(b"X-Miltrd-Direction: ")
    return data[data.index(b"\r\n", start) + 2 :]


def test_case_21_archives_are_each_one_consistent_message(system) -> None:
    postfix, sink, base = system
    send(postfix, "21-wiretap-copy-after-body-change", "case21", rcpt="tap@example.com")
    got = sink.delivered("case21 tool").replace(b"\r\n", b"\n")
    # as received: the program, under its own headers
    received = email.message_from_bytes(archived(base, "received"), policy=email.policy.default)
    assert received["Subject"] == "case21 tool"
    assert received.get_filename() == "tool.exe"
    assert received.get_payload(decode=True).startswith(b"MZ")
    # as delivered: what the next hop got
    delivered = archived(base, "delivered").replace(b"\r\n", b"\n")
    got_body = got.partition(b"\n\n")[2]
    copy_body = delivered.partition(b"\n\n")[2]
    assert copy_body == got_body.removesuffix(b"\n")  # smtp-sink ends its file with a newline
    ours = email.message_from_bytes(delivered, policy=email.policy.default)
    theirs = email.message_from_bytes(got, policy=email.policy.default)
    # smtp-sink and Postfix put their own lines above the message
    added_on_the_way = {"Received", "X-Client-Addr", "X-Client-Proto"} | {
        f"X-{step}-Args" for step in ("Helo", "Mail", "Rcpt")
    }
    assert [(k, str(v)) for k, v in ours.items()] == [
        (k, str(v)) for k, v in theirs.items() if k not in added_on_the_way
    ]
    assert ours.get_content_type() == "text/plain" and "tool.exe" in ours.get_content()
