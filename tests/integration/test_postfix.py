"""End to end through a real Postfix 3.x from Debian's packages.

The test speaks SMTP to Postfix on loopback; Postfix speaks the milter
protocol to a real ``miltrd run`` process and relays accepted mail to
smtp-sink. What is asserted is what a sender and a recipient would see.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from ..tools import free_port, require
from .mta import POSTFIX, SMTP_SINK, Miltrd, Postfix, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration

CONFIG = """\
[daemon]
listen = ["inet:{port}@127.0.0.1"]
timeout = 5.0
log_level = "info"

[internal]
networks = ["10.0.0.0/8"]

[chain]
plugins = ["rcpt", "greylist", "crash", "stamp"]

[plugins.rcpt]
use = "tests.testplugins:RejectRecipient"
recipients = ["nobody@example.com"]

[plugins.greylist]
use = "tests.testplugins:TempfailSender"
senders = ["grey@example.org"]

[plugins.crash]
use = "tests.testplugins:Raiser"
phase = "eom"
only_sender = "crash@example.org"

[plugins.stamp]
use = "tests.testplugins:AddHeader"
name = "X-Miltrd-Test"
value = "stamped"
"""


@pytest.fixture(scope="module")
def mail_system() -> Iterator[tuple[Postfix, Sink, Miltrd]]:
    require(POSTFIX, SMTP_SINK, "script")
    with world_readable_tmpdir() as base:
        yield from _system(base)


def _system(base: Path) -> Iterator[tuple[Postfix, Sink, Miltrd]]:
    port = free_port()
    config = base / "miltrd.toml"
    config.write_text(CONFIG.format(port=port))
    miltrd = Miltrd(config, port=port)
    sink = Sink(base / "sink")
    postfix = Postfix(base / "pf", f"inet:127.0.0.1:{port}", sink.port)
    with running(miltrd, sink, postfix):
        yield postfix, sink, miltrd


def _message(sender: str, rcpt: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg.set_content("Hello from the integration test.\n")
    return msg


def _smtp(postfix: Postfix) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60)


def test_rejected_recipient_gets_5xx(mail_system) -> None:
    postfix, _sink, _ = mail_system
    with _smtp(postfix) as smtp:
        smtp.ehlo("client.test")
        assert smtp.mail("alice@example.org")[0] == 250
        code, text = smtp.rcpt("nobody@example.com")
        assert code == 550
        assert b"5.1.1" in text and b"no such user here" in text
        assert smtp.rcpt("somebody@example.com")[0] == 250


def test_added_header_is_in_the_delivered_message(mail_system) -> None:
    postfix, sink, miltrd = mail_system
    with _smtp(postfix) as smtp:
        smtp.send_message(_message("alice@example.org", "bob@example.com", "stamp me"))
    raw = sink.delivered("stamp me")
    assert b"X-Miltrd-Test: stamped" in raw
    log = miltrd.wait_log("from=<alice@example.org> to=<bob@example.com>")
    # The summary line carries Postfix's queue id.
    assert re.search(
        r"\[c\d+\] [0-9A-Za-z]+: summary client=localhost\[127\.0\.0\.1\] "
        r"from=<alice@example.org> to=<bob@example.com> .*action=accept",
        log,
    ), log


def test_tempfail_plugin_gives_4xx(mail_system) -> None:
    postfix, _sink, _ = mail_system
    with _smtp(postfix) as smtp:
        smtp.ehlo("client.test")
        code, text = smtp.mail("grey@example.org")
        assert code == 451
        assert b"4.7.1 greylisted" in text


def test_raising_plugin_tempfails_and_miltrd_keeps_serving(mail_system) -> None:
    postfix, sink, miltrd = mail_system
    with _smtp(postfix) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as failed:
            smtp.send_message(_message("crash@example.org", "bob@example.com", "crash"))
        assert failed.value.smtp_code == 451
        assert b"4.3.0" in failed.value.smtp_error
    log = miltrd.wait_log("plugin crash: eom hook failed")
    assert "RuntimeError: plugin bug at eom" in log
    # The next message on a new connection is filtered and delivered.
    with _smtp(postfix) as smtp:
        smtp.send_message(_message("alice@example.org", "carol@example.com", "after crash"))
    raw = sink.delivered("after crash")
    assert b"X-Miltrd-Test: stamped" in raw
    assert b"crash" not in b"".join(m for m in sink.messages() if b"Subject: crash" in m)


def test_postfix_over_a_unix_socket_with_the_postfix_group() -> None:
    """``group`` names the unix socket's group (here Postfix's own); socket 0660.

    The README's setup (group miltrd, which the postfix user joins) is
    test_socket_layout.py's."""
    require(POSTFIX, SMTP_SINK, "script")
    with world_readable_tmpdir() as base:
        sock = base / "miltrd.sock"
        cfg = base / "miltrd.toml"
        cfg.write_text(
            f'[daemon]\nlisten = ["local:{sock}"]\nsocket_mode = "0660"\ngroup = "postfix"\n'
            '[chain]\nplugins = ["stamp"]\n[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\n'
            'name = "X-Via-Unix"\nvalue = "yes"\n'
        )
        miltrd = Miltrd(cfg, unix_path=str(sock))
        sink = Sink(base / "sink")
        postfix = Postfix(base / "pf", f"unix:{sock}", sink.port)
        with running(miltrd, sink, postfix):
            import grp
            import stat as stat_mod

            st = sock.stat()
            assert stat_mod.S_IMODE(st.st_mode) == 0o660
            assert st.st_gid == grp.getgrnam("postfix").gr_gid
            with _smtp(postfix) as smtp:
                smtp.send_message(_message("alice@example.org", "bob@example.com", "via unix"))
            raw = sink.delivered("via unix")
            assert b"X-Via-Unix: yes" in raw
