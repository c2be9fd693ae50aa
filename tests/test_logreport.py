"""miltrd stats on syslog-format lines (as with log = "syslog")."""

from __future__ import annotations

from miltrd.logreport import parse_lines, report

SYSLOG = [
    "Nov 22 09:14:02 mx miltrd[812]: INFO [c1] 4Bc1: summary client=pc7.lan[10.1.2.3] "
    "from=<boss@evil.example> to=- rejected=- plugins=zombie:reject,spf:continue "
    "action=reject (550 5.7.1 Client 10.1.2.3 may not send as <boss@evil.example>: not one of "
    "our domains) at mail time=0.001s",
    "Nov 22 09:15:40 mx miltrd[812]: INFO [c2] 4Bc2: summary client=mx.example.net[192.0.2.7] "
    "from=<a@example.net> to=<b@example.com> rejected=- plugins=zombie:continue,spf:continue "
    "action=accept time=0.010s",
    "Nov 22 10:01:00 mx miltrd[812]: ERROR [c3] 4Bc3: plugin spf: mail hook failed; "
    "on_error=tempfail",
    "Nov 22 10:01:00 mx miltrd[812]: INFO [c3] 4Bc3: summary client=x[203.0.113.9] "
    "from=<> to=- rejected=- plugins=zombie:continue,spf:error->tempfail "
    "action=tempfail (451 4.3.0 Temporary failure in mail filter, try again later) at mail "
    "time=0.020s",
    "unrelated line",
]


def test_syslog_lines() -> None:
    stats = parse_lines(SYSLOG)
    assert stats.messages == 3
    assert stats.actions == {"reject": 1, "accept": 1, "tempfail": 1}
    assert stats.refusing_plugins == {"zombie": 1, "spf": 1}
    assert stats.senders_refused == {"boss@evil.example": 1, "<>": 1}
    assert stats.clients_refused == {"10.1.2.3": 1, "203.0.113.9": 1}
    assert stats.per_hour == {"11-22 09:00": 2, "11-22 10:00": 1}
    assert stats.errors == {"spf error": 1}
    text = report(stats)
    assert "zombie: 550 5.7.1 Client 10.1.2.3 may not send as <boss@evil.example>" in text
