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


def test_client_with_no_name_postfix_form() -> None:
    # Postfix passes "[ADDRESS]" as the name of a client it has no name for.
    line = (
        "2026-11-30 10:00:00,000 INFO [c1] AB12: summary client=[127.0.0.1][127.0.0.1] "
        "from=<root@host.example.com> to=<b@example.com> rejected=- plugins=zombie:reject "
        "action=reject (550 5.7.1 no) at mail time=0.001s"
    )
    stats = parse_lines([line])
    assert stats.clients_refused == {"127.0.0.1": 1}
    v6 = line.replace("[127.0.0.1][127.0.0.1]", "[IPv6:2001:db8::1][2001:db8::1]")
    assert parse_lines([v6]).clients_refused == {"2001:db8::1": 1}


def test_a_log_without_summary_lines_says_so() -> None:
    text = report(parse_lines(["unrelated line", "Nov 22 09:14:02 mx postfix/smtpd[1]: x"]))
    assert text.startswith("miltrd stats: no summary lines found")
    assert "Messages by action" not in text
