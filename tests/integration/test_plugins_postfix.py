"""The built-in plugins through a real Postfix, with DNS from a real server.

Postfix lets the test present other client addresses with XCLIENT
(smtpd_authorized_xclient_hosts), so one loopback SMTP client can play an
internal PC, an outside server that passes SPF and one that fails it.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from ..dnsserver import dns_server
from ..tools import free_port, require
from .mta import POSTFIX, SMTP_SINK, Miltrd, Postfix, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration

CONFIG = """\
[daemon]
listen = ["inet:{port}@127.0.0.1"]

[internal]
networks = ["10.0.0.0/8"]
domains = ["example.com"]

[chain]
plugins = ["zombie", "spf", "bcc", "outtag"]

[plugins.spf]
nameservers = ["127.0.0.1:{dns}"]
dns_timeout = 3.0

[[plugins.bcc.rules]]
direction = ["outgoing"]
copy_to = ["sent-archive@example.com"]

[plugins.outtag]
use = "tests.testplugins:AddHeader"
name = "X-Outgoing"
value = "yes"
[plugins.outtag.when]
direction = ["outgoing"]
"""


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[Postfix, Sink, Miltrd]]:
    require(POSTFIX, SMTP_SINK, "script")
    with dns_server() as dns, world_readable_tmpdir() as base:
        port = free_port()
        cfg = base / "miltrd.toml"
        cfg.write_text(CONFIG.format(port=port, dns=dns))
        miltrd = Miltrd(cfg, port=port)
        sink = Sink(base / "sink")
        postfix = Postfix(
            base / "pf",
            f"inet:127.0.0.1:{port}",
            sink.port,
            extra=(
                "smtpd_authorized_xclient_hosts = 127.0.0.0/8\n"
                # Relaying for the pretend clients, so the milter decides.
                "mynetworks = 127.0.0.0/8 10.0.0.0/8 192.0.2.0/24 203.0.113.0/24\n"
            ),
        )
        with running(miltrd, sink, postfix):
            yield postfix, sink, miltrd


def smtp_as(postfix: Postfix, addr: str, name: str) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60)
    smtp.ehlo("client.test")
    code, text = smtp.docmd("XCLIENT", f"ADDR={addr} NAME={name} HELO={name}")
    assert code == 220, text
    smtp.ehlo(name)
    return smtp


def message(sender: str, rcpt: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, rcpt, subject
    msg.set_content("plugin test\n")
    return msg


def test_spf_fail_is_rejected_at_mail_from(system) -> None:
    postfix, _, _ = system
    with smtp_as(postfix, "203.0.113.9", "mx.outside.example") as smtp:
        code, text = smtp.mail("mallory@example.org")
    assert code == 550
    assert b"5.7.1 SPF fail for sender domain example.org" in text


def test_spf_pass_is_delivered_with_its_headers(system) -> None:
    postfix, sink, _ = system
    with smtp_as(postfix, "192.0.2.55", "mail.example.org") as smtp:
        smtp.send_message(message("alice@example.org", "bob@example.com", "spf pass"))
    raw = re.sub(rb"\r?\n(?=[ \t])", b"", sink.delivered("spf pass"))  # unfolded
    assert b"Received-SPF: Pass (" in raw
    assert b"client-ip=192.0.2.55;" in raw
    assert (
        b"Authentication-Results: mta.test.example; spf=pass smtp.mailfrom=alice@example.org" in raw
    )


def test_zombie_is_refused_naming_ip_and_address(system) -> None:
    postfix, _, miltrd = system
    with smtp_as(postfix, "10.1.2.3", "pc17.lan.example.com") as smtp:
        code, text = smtp.mail("boss@evil.example")
    assert code == 550
    assert b"5.7.1 Client 10.1.2.3 may not send as <boss@evil.example>" in text
    assert "ZOMBIE client=" in miltrd.wait_log("ZOMBIE")


def test_outgoing_mail_gets_the_bcc_recipient(system) -> None:
    postfix, sink, _ = system
    with smtp_as(postfix, "10.1.2.3", "pc17.lan.example.com") as smtp:
        smtp.send_message(message("user@example.com", "partner@other.example", "outgoing bcc"))
    raw = sink.delivered("outgoing bcc")
    # smtp-sink records the envelope recipients it was given.
    assert b"sent-archive@example.com" in raw
    assert b"partner@other.example" in raw
    assert b"X-Outgoing: yes" in raw
