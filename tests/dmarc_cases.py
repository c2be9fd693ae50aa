"""DMARC cases shared by the dmarc plugin's tests and the comparison with
OpenDMARC: DNS records for the loopback DNS server and, per case, the From
address, the spf and dkim results published before dmarc, and the outcome
RFC 7489 gives (result, disposition)."""

from __future__ import annotations

from dataclasses import dataclass

# Domains under public suffixes the Public Suffix List knows (org, co.uk),
# so that every implementation finds the same Organizational Domains.
ZONE = """\
local=/org/
local=/co.uk/
txt-record=_dmarc.relaxed.org,"v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@relaxed.org"
txt-record=_dmarc.strict.org,"v=DMARC1; p=quarantine; adkim=s; aspf=s"
txt-record=_dmarc.pct0.org,"v=DMARC1; p=reject; pct=0"
txt-record=_dmarc.pct50.org,"v=DMARC1; p=reject; pct=50"
txt-record=_dmarc.pct50q.org,"v=DMARC1; p=quarantine; pct=50"
txt-record=_dmarc.monitor.org,"v=DMARC1; p=none"
txt-record=_dmarc.own.relaxed.org,"v=DMARC1; p=none"
txt-record=_dmarc.shop.co.uk,"v=DMARC1; p=reject"
# a DNS server that never answers for this domain: a temporary error
server=/servfail.org/127.0.0.1#9
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
        "a@mail.relaxed.org",
        None,
        ("pass", "relaxed.org"),
        "pass",
        "none",
    ),
    Case(
        "spf-aligned-relaxed",
        "a@relaxed.org",
        ("pass", "bounce.relaxed.org"),
        None,
        "pass",
        "none",
    ),
    Case(
        "unaligned",
        "a@relaxed.org",
        ("pass", "other.org"),
        ("pass", "other.org"),
        "fail",
        "reject",
    ),
    Case(
        "aligned-but-dkim-fails", "a@relaxed.org", None, ("fail", "relaxed.org"), "fail", "reject"
    ),
    Case("strict-dkim-exact", "a@strict.org", None, ("pass", "strict.org"), "pass", "none"),
    Case(
        "strict-dkim-parent",
        "a@mail.strict.org",
        None,
        ("pass", "strict.org"),
        "fail",
        "quarantine",
    ),
    Case(
        "strict-spf-subdomain",
        "a@strict.org",
        ("pass", "mail.strict.org"),
        None,
        "fail",
        "quarantine",
    ),
    Case(
        "subdomain-policy",
        "a@sub.relaxed.org",
        ("fail", "sub.relaxed.org"),
        None,
        "fail",
        "quarantine",
    ),
    Case("subdomain-own-record", "a@own.relaxed.org", None, None, "fail", "none"),
    Case("psl-two-label-suffix", "a@mail.shop.co.uk", None, ("pass", "shop.co.uk"), "pass", "none"),
    Case("psl-suffix-is-not-an-org", "a@shop.co.uk", None, ("pass", "co.uk"), "fail", "reject"),
    Case("pct-0", "a@pct0.org", ("pass", "other.org"), None, "fail", "quarantine"),
    Case("p-none", "a@monitor.org", None, None, "fail", "none"),
    Case("no-record", "a@norecord.org", ("pass", "norecord.org"), None, "none", "none"),
    Case("dns-failure", "a@servfail.org", None, None, "temperror", "none"),
]
