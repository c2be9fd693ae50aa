"""A pymilter program's summary lines carry what every summary line
carries: the client, the sender and the recipients, also when the program
switched those steps off (tagger.py has only an eom callback)."""

from __future__ import annotations

import re
import smtplib
import time

import pytest

from ..pymilter.runner import PROGRAMS, Program
from ..tools import free_port, require
from .mta import Postfix, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration


def test_postfix_mail_through_a_pymilter_program_is_summarised_in_full() -> None:
    require("postfix", "smtp-sink", "script")
    port = free_port()
    prog = Program(PROGRAMS / "tagger.py", f"inet:{port}@127.0.0.1", port=port)
    with world_readable_tmpdir() as base:
        sink = Sink(base / "sink")
        postfix = Postfix(base / "pf", f"inet:127.0.0.1:{port}", sink.port)
        with running(prog, sink, postfix):
            with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
                smtp.ehlo("client.test")
                smtp.sendmail(
                    "alice@example.org",
                    ["bob@example.com", "carol@example.com"],
                    b"From: alice@example.org\r\nSubject: tagged\r\n\r\nhi\r\n",
                )
            delivered = sink.delivered("tagged")
            deadline = time.monotonic() + 10
            while "summary client=" not in prog.log() and time.monotonic() < deadline:
                time.sleep(0.1)
            log = prog.log()
    assert b"X-Tagged: yes" in delivered  # the filter ran, at end of message only
    summary = re.search(r"summary client=.*", log)
    assert summary, log
    assert re.match(
        r"summary client=\S+\[127\.0\.0\.1\] from=<alice@example\.org> "
        r"to=<bob@example\.com>,<carol@example\.com> rejected=- plugins=tagger:continue "
        r"changes=tagger:add-header action=accept time=",
        summary[0],
    ), summary[0]
