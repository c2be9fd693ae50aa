"""wiretap through a real Postfix: per-user archives and a wiretap copy."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from ..tools import free_port, require
from .mta import POSTFIX, SMTP_SINK, Miltrd, Postfix, Sink, running, world_readable_tmpdir
from .test_plugins_postfix import smtp_as

pytestmark = pytest.mark.integration

CONFIG = """\
[daemon]
listen = ["inet:{port}@127.0.0.1"]

[internal]
networks = ["10.0.0.0/8"]
domains = ["example.com"]

[chain]
plugins = ["wiretap"]

[plugins.wiretap]
root = "{root}"

[[plugins.wiretap.archive]]
path = "{{direction}}/{{domain}}/{{user}}"

[[plugins.wiretap.archive]]
path = "{{direction}}/{{domain}}/{{user}}"
side = "sender"
direction = ["outgoing"]

[[plugins.wiretap.tap]]
users = ["watched@example.com"]
copy_to = "legal-hold@example.net"
"""


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[Postfix, Sink, Miltrd, Path]]:
    require(POSTFIX, SMTP_SINK, "script")
    with world_readable_tmpdir() as base:
        port = free_port()
        root = base / "archive"
        cfg = base / "miltrd.toml"
        cfg.write_text(CONFIG.format(port=port, root=root))
        miltrd = Miltrd(cfg, port=port)
        sink = Sink(base / "sink")
        postfix = Postfix(
            base / "pf",
            f"inet:127.0.0.1:{port}",
            sink.port,
            extra=(
                "smtpd_authorized_xclient_hosts = 127.0.0.0/8\n"
                "mynetworks = 127.0.0.0/8 10.0.0.0/8 192.0.2.0/24\n"
            ),
        )
        with running(miltrd, sink, postfix):
            yield postfix, sink, miltrd, root


def message(sender: str, rcpt: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, rcpt, subject
    msg.set_content("archive test\n")
    return msg


def archived(box: Path, subject: str) -> bytes:
    for path in (box / "new").iterdir():
        data = path.read_bytes()
        if f"Subject: {subject}".encode() in data:
            return data
    raise AssertionError(f"{subject!r} not in {box}")


def test_incoming_and_outgoing_land_in_per_user_archives(system) -> None:
    postfix, sink, _, root = system
    with smtp_as(postfix, "192.0.2.5", "mx.outside.example") as smtp:
        smtp.send_message(message("someone@outside.example", "bob@example.com", "in"))
    with smtp_as(postfix, "10.0.0.7", "pc.lan.example.com") as smtp:
        smtp.send_message(message("carol@example.com", "partner@outside.example", "out"))
    sink.delivered("in")
    sink.delivered("out")
    incoming = archived(root / "incoming" / "example.com" / "bob", "in")
    assert b"X-Miltrd-Envelope-From: <someone@outside.example>" in incoming
    assert b"X-Miltrd-Queue-Id: " in incoming
    archived(root / "outgoing" / "outside.example" / "partner", "out")
    archived(root / "outgoing" / "example.com" / "carol", "out")


def test_wiretapped_user_mail_reaches_the_copy_recipient(system) -> None:
    postfix, sink, _, _ = system
    with smtp_as(postfix, "192.0.2.5", "mx.outside.example") as smtp:
        smtp.send_message(message("someone@outside.example", "watched@example.com", "tapped"))
    raw = sink.delivered("tapped")
    assert b"legal-hold@example.net" in raw
