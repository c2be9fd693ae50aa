"""End to end through a real Sendmail 8.17 (Debian's packages, unpacked).

Sendmail runs with a sendmail.cf built from an .mc by Sendmail's own m4
files, with INPUT_MAIL_FILTER pointing at a real ``miltrd run`` over TCP
or a unix socket, and relays to smtp-sink.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from ..tools import free_port, require
from .mta import SENDMAIL_BIN, SMTP_SINK, Miltrd, Sendmail, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration

CONFIG = """\
[daemon]
listen = ["{listen}"]

[chain]
plugins = ["rcpt", "stamp", "upper", "copy"]

[plugins.rcpt]
use = "tests.testplugins:RejectRecipient"
recipients = ["nobody@example.com"]

[plugins.stamp]
use = "tests.testplugins:AddHeader"
name = "X-Miltrd-Sendmail"
value = "stamped"

[plugins.upper]
use = "tests.testplugins:UpperBody"

[plugins.copy]
use = "bcc"
[[plugins.copy.rules]]
copy_to = ["archive@example.net"]
"""


@pytest.fixture(scope="module", params=["inet", "unix"])
def system(request) -> Iterator[tuple[Sendmail, Sink, Miltrd]]:
    require(str(SENDMAIL_BIN), "m4", "unshare", SMTP_SINK)
    with world_readable_tmpdir() as base:
        if request.param == "inet":
            port = free_port()
            listen, milter = f"inet:{port}@127.0.0.1", f"inet:{port}@127.0.0.1"
        else:
            path = base / "miltrd.sock"
            listen, milter, port = f"local:{path}", f"local:{path}", None
        cfg = base / "miltrd.toml"
        cfg.write_text(CONFIG.format(listen=listen))
        miltrd = Miltrd(cfg, port=port, unix_path=None if port else str(base / "miltrd.sock"))
        sink = Sink(base / "sink")
        sendmail = Sendmail(base / "sm", milter, sink.port)
        with running(miltrd, sink, sendmail):
            yield sendmail, sink, miltrd


def test_rejected_recipient_gets_5xx(system) -> None:
    sendmail, _, _ = system
    with smtplib.SMTP("127.0.0.1", sendmail.smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        assert smtp.mail("alice@example.org")[0] == 250
        code, text = smtp.rcpt("nobody@example.com")
        assert code == 550
        assert b"5.1.1" in text and b"no such user here" in text


def test_header_body_and_recipient_changes_are_delivered(system) -> None:
    sendmail, sink, _ = system
    with smtplib.SMTP("127.0.0.1", sendmail.smtp_port, timeout=60) as smtp:
        smtp.sendmail(
            "alice@example.org",
            ["bob@example.com"],
            b"From: alice@example.org\r\nSubject: changes\r\n\r\nquiet body\r\n",
        )
    raw = sink.delivered("changes")
    assert b"X-Miltrd-Sendmail: stamped" in raw
    assert b"QUIET BODY" in raw and b"quiet body" not in raw
    assert b"<archive@example.net>" in raw  # the added recipient was given to the relay
    assert b"<bob@example.com>" in raw


def test_miltrd_down_gives_the_f_t_tempfail(system) -> None:
    sendmail, _, miltrd = system
    miltrd.stop()
    with smtplib.SMTP("127.0.0.1", sendmail.smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        code, _text = smtp.mail("alice@example.org")
        if code == 250:
            code, _text = smtp.rcpt("bob@example.com")
    assert 400 <= code < 500
