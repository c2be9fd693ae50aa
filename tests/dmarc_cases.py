"""DMARC cases shared by the dmarc plugin's tests and the comparison with
OpenDMARC: DNS records for the loopback DNS server and, per case, the From
address, the spf and dkim results published before dmarc, and the outcome
RFC 7489 gives (result, disposition)."""

from __future__ import annotations

from dataclasses import dataclass

# ".test" is not in the Public Suffix List: each NAME.test is an
# Organizational Domain of its own (RFC 7489 section 3.2, rule 4).
ZONE = """\
local=/test/
txt-record=_dmarc.relaxed.test,"v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@relaxed.test"
txt-record=_dmarc.strict.test,"v=DMARC1; p=quarantine; adkim=s; aspf=s"
txt-record=_dmarc.pct0.test,"v=DMARC1; p=reject; pct=0"
txt-record=_dmarc.monitor.test,"v=DMARC1; p=none"
txt-record=_dmarc.own.relaxed.test,"v=DMARC1; p=none"
# a DNS server that never answers for this domain: a temporary error
server=/servfail.test/127.0.0.1#9
"""


@dataclass(frozen=True)
class Case:
    name: str
    from_: str
    spf: tuple[str, str] | None  # (result, MAIL FROM domain)
    dkim: tuple[str, str] | None  # (result, d=)
    result: str
    disposition: str  # none | quarantine | reject


CASES = [
    Case(
        "dkim-aligned-relaxed",
        "a@mail.relaxed.test",
        None,
        ("pass", "relaxed.test"),
        "pass",
        "none",
    ),
    Case(
        "spf-aligned-relaxed",
        "a@relaxed.test",
        ("pass", "bounce.relaxed.test"),
        None,
        "pass",
        "none",
    ),
    Case(
        "unaligned",
        "a@relaxed.test",
        ("pass", "other.test"),
        ("pass", "other.test"),
        "fail",
        "reject",
    ),
    Case(
        "aligned-but-dkim-fails", "a@relaxed.test", None, ("fail", "relaxed.test"), "fail", "reject"
    ),
    Case("strict-dkim-exact", "a@strict.test", None, ("pass", "strict.test"), "pass", "none"),
    Case(
        "strict-dkim-parent",
        "a@mail.strict.test",
        None,
        ("pass", "strict.test"),
        "fail",
        "quarantine",
    ),
    Case(
        "strict-spf-subdomain",
        "a@strict.test",
        ("pass", "mail.strict.test"),
        None,
        "fail",
        "quarantine",
    ),
    Case(
        "subdomain-policy",
        "a@sub.relaxed.test",
        ("fail", "sub.relaxed.test"),
        None,
        "fail",
        "quarantine",
    ),
    Case("subdomain-own-record", "a@own.relaxed.test", None, None, "fail", "none"),
    Case("pct-0", "a@pct0.test", ("pass", "other.test"), None, "fail", "quarantine"),
    Case("p-none", "a@monitor.test", None, None, "fail", "none"),
    Case("no-record", "a@norecord.test", ("pass", "norecord.test"), None, "none", "none"),
    Case("dns-failure", "a@servfail.test", None, None, "temperror", "none"),
]
