"""Cron mail through a real Postfix: a host-qualified local sender
(``root@host.example.com`` from 127.0.0.1, as ``non_smtpd_milters =
$smtpd_milters`` hands the host's own submissions to the milter) is not a
zombie, with ``subdomains = false`` and the site's domain example.com."""

from __future__ import annotations

import smtplib

import pytest

from ..tools import free_port, require
from .mta import Miltrd, Postfix, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration

CONFIG = """\
[daemon]
listen = ["inet:{port}@127.0.0.1"]

[internal]
networks = ["127.0.0.0/8", "::1/128"]
domains = ["example.com"]

[chain]
plugins = ["zombie"]

[plugins.zombie]
mode = "enforce"
subdomains = false
"""


def test_local_cron_mail_from_the_hosts_name_is_delivered_and_a_forgery_is_not() -> None:
    require("postfix", "smtp-sink", "script")
    with world_readable_tmpdir() as base:
        port = free_port()
        cfg = base / "miltrd.toml"
        cfg.write_text(CONFIG.format(port=port))
        miltrd = Miltrd(cfg, port=port)
        sink = Sink(base / "sink")
        postfix = Postfix(
            base / "pf",
            f"inet:127.0.0.1:{port}",
            sink.port,
            extra="myhostname = host.example.com\nnon_smtpd_milters = $smtpd_milters\n",
        )
        with running(miltrd, sink, postfix):
            with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
                smtp.ehlo("host.example.com")
                smtp.sendmail(
                    "root@host.example.com",
                    ["admin@example.com"],
                    b"From: root@host.example.com\r\nSubject: cron output\r\n\r\nok\r\n",
                )
                code, text = smtp.mail("root@evil.example.org")
            assert b"cron output" in sink.delivered("cron output")
    assert code == 550, text
    assert b"may not send as <root@evil.example.org>" in text
