"""Faults through a real MTA, short form (the long one: python3 -m bench.faults).

Numbered mail through the private Postfix (and, shorter, Sendmail with
F=T) while miltrd (workers = 2; spf -> wiretap -> a marking plugin) is
hit by SIGHUP storms with good and broken configs, SIGKILL of a worker
and of the daemon, SIGTERM with restarts, a silent DNS server, a full
archive filesystem and a burst over max_connections. Counted at the sink:
every message delivered exactly once and marked, none unfiltered, none
lost; at least one archive copy each.
"""

from __future__ import annotations

import os
import re

import pytest

from bench.faults import check, run

from ..tools import require
from .mta import POSTFIX, SENDMAIL_BIN, SMTP_SINK

pytestmark = pytest.mark.integration


def _require() -> None:
    require(POSTFIX, SMTP_SINK, "script", "/usr/sbin/dnsmasq", "mount")
    if os.geteuid() != 0:
        pytest.skip("needs root: the full archive filesystem is a small tmpfs")


def test_faults_through_postfix() -> None:
    _require()
    report = run("postfix", 300, burst_sessions=24)
    print(report.table())
    assert check(report) == [], report.table()
    assert report.sent >= 300 + 9  # the numbered messages and one probe per fault
    assert report.delivered_once_marked == report.sent
    assert report.unmarked == 0 and report.duplicated == 0 and report.missing == 0
    # The faults did happen, and the MTA said "try later" rather than passing mail.
    assert report.deferred > 0 and report.mta_tempfails > 0
    log = report.daemon_log
    assert re.search(r"miltrd\.toml:\d+: plugins\.spf\.dns_timeout: expected", log), log[-3000:]
    assert "max_connections (4) reached" in log
    assert "temperror" in log  # the silent DNS server
    assert re.search(r"archive \S+ \(maildir\) failed: .*No space left", log)
    assert all(seconds < 60 for _, seconds in report.recoveries), report.recoveries


def test_faults_through_sendmail() -> None:
    _require()
    require(str(SENDMAIL_BIN), "m4", "unshare")
    report = run(
        "sendmail",
        120,
        faults=["SIGHUP storm", "SIGKILL of a worker + SIGHUP", "SIGTERM", "SIGKILL of the daemon"],
    )
    print(report.table())
    assert check(report) == [], report.table()
    assert report.delivered_once_marked == report.sent >= 120 + 4
    assert report.deferred > 0
