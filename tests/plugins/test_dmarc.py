"""The dmarc plugin: RFC 7489 policy discovery, alignment and disposition,
with records from the loopback DNS server and the Public Suffix List
from Debian's publicsuffix package."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import authres
import pytest
from miltrd.plugins import _psl

from miltrd.api import HeaderInsertion, Quarantining, VerdictKind
from miltrd.chain import build_runtime
from miltrd.config import ConfigError, load_text

from ..dmarc_cases import CASES, ZONE, Case
from ..dnsserver import dns_server
from .helpers import run_message, session


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    with dns_server(ZONE) as port:
        yield port


def config(port: int, case: Case | None = None, extra: str = "") -> str:
    spf = case.spf if case else None
    dkim = case.dkim if case else None
    return (
        '[internal]\nnetworks = []\nauthserv_id = "mx.example.com"\n'
        '[chain]\nplugins = ["spfres", "dkimres", "dmarc"]\n'
        '[plugins.spfres]\nuse = "tests.testplugins:PublishResult"\nmethod = "spf"\n'
        f'result = "{spf[0] if spf else ""}"\n'
        f'properties = {{"smtp.mailfrom" = "bounce@{spf[1] if spf else ""}"}}\n'
        '[plugins.dkimres]\nuse = "tests.testplugins:PublishResult"\nmethod = "dkim"\n'
        f'result = "{dkim[0] if dkim else ""}"\n'
        f'properties = {{"header.d" = "{dkim[1] if dkim else ""}", "header.s" = "s1"}}\n'
        f'[plugins.dmarc]\nnameservers = ["127.0.0.1:{port}"]\ndns_timeout = 1.0\n{extra}\n'
    )


def message(from_: str, extra: bytes = b"") -> bytes:
    return (
        f"From: {from_}\r\nTo: bob@example.com\r\nSubject: dmarc\r\n".encode()
        + extra
        + b"\r\nbody\r\n"
    )


def dmarc_results(out) -> list[tuple[str, dict[str, str], str]]:
    values = [
        c.value
        for c in out.changes
        if isinstance(c, HeaderInsertion) and c.name == "Authentication-Results"
    ]
    assert len(values) == 1, out.changes
    parsed = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {values[0]}")
    return [
        (r.result, {f"{p.type}.{p.name}": p.value for p in r.properties}, r.reason or "")
        for r in parsed.results
        if r.method == "dmarc"
    ]


def disposition(out) -> str:
    assert out.final is not None
    if out.final.kind is VerdictKind.REJECT:
        assert out.final.reply is not None
        assert (out.final.reply.code, out.final.reply.xcode) == (550, "5.7.1")
        return "reject"
    assert out.final.kind is VerdictKind.CONTINUE
    if any(isinstance(c, Quarantining) for c in out.changes):
        return "quarantine"
    return "none"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cases(dns_port: int, case: Case) -> None:
    s = session(config(dns_port, case), ip="192.0.2.10")
    out = run_message(s, "x@example.net", ["bob@example.com"], message(case.from_))
    assert disposition(out) == case.disposition
    if case.disposition == "reject":
        return  # no headers on a refused message
    ((result, props, _reason),) = dmarc_results(out)
    assert result == case.result
    assert props["header.from"] == case.from_.split("@")[1]


def test_several_from_addresses_take_the_strictest_failing_policy(dns_port: int) -> None:
    case = Case("two", "", None, ("pass", "relaxed.org"), "", "")
    s = session(config(dns_port, case), ip="192.0.2.10")
    raw = message("a@relaxed.org, b@strict.org")
    out = run_message(s, "x@example.net", ["bob@example.com"], raw)
    assert disposition(out) == "quarantine"
    results = {p["header.from"]: r for r, p, _ in dmarc_results(out)}
    assert results == {"relaxed.org": "pass", "strict.org": "fail"}


@pytest.mark.parametrize(
    "raw",
    [b"To: bob@example.com\r\n\r\nno from\r\n", message("a@relaxed.org", b"From: b@x.org\r\n")],
    ids=["no-from", "two-from-fields"],
)
def test_no_from_or_several_from_fields(dns_port: int, raw: bytes) -> None:
    s = session(config(dns_port), ip="192.0.2.10")
    out = run_message(s, "x@example.net", ["bob@example.com"], raw)
    assert disposition(out) == "reject"
    s = session(config(dns_port, extra='invalid_from = "mark"'), ip="192.0.2.10")
    out = run_message(s, "x@example.net", ["bob@example.com"], raw)
    assert disposition(out) == "none"
    assert [r for r, _, _ in dmarc_results(out)] == ["permerror"]


@pytest.mark.parametrize(
    "extra, ip, raw_extra",
    [
        ('trusted_forwarders = ["198.51.100.0/24"]', "198.51.100.7", b""),
        (
            'mailing_lists = ["<users.lists.example.org>"]',
            "192.0.2.10",
            b"List-Id: Users <users.lists.example.org>\r\n",
        ),
        ('allow_domains = ["relaxed.org"]', "192.0.2.10", b""),
    ],
    ids=["trusted-forwarder", "mailing-list", "allowed-domain"],
)
def test_local_overrides_keep_the_result_and_apply_no_policy(
    dns_port, extra, ip, raw_extra
) -> None:
    case = Case("o", "", ("pass", "other.org"), None, "", "")
    s = session(config(dns_port, case, extra), ip=ip)
    out = run_message(s, "x@example.net", ["bob@example.com"], message("a@relaxed.org", raw_extra))
    assert disposition(out) == "none"
    assert [r for r, _, _ in dmarc_results(out)] == ["fail"]


def test_disposition_table_turns_reject_into_quarantine(dns_port: int) -> None:
    case = Case("d", "", ("pass", "other.org"), None, "", "")
    extra = '[plugins.dmarc.disposition]\nreject = "quarantine"'
    s = session(config(dns_port, case, extra), ip="192.0.2.10")
    out = run_message(s, "x@example.net", ["bob@example.com"], message("a@relaxed.org"))
    assert disposition(out) == "quarantine"


def test_temperror_can_tempfail(dns_port: int) -> None:
    extra = '[plugins.dmarc.disposition]\ntemperror = "tempfail"'
    s = session(config(dns_port, extra=extra), ip="192.0.2.10")
    out = run_message(s, "x@example.net", ["bob@example.com"], message("a@servfail.org"))
    assert out.final is not None and out.final.kind is VerdictKind.TEMPFAIL


def sample_run(port: int, domain: str, seed: int | None, n: int = 200) -> list[str]:
    """The disposition of ``n`` failing messages from ``domain`` in one session
    (one generator for all of them, as in the daemon), with the A-R result of each."""
    case = Case("pct", "", ("pass", "other.org"), None, "", "")
    extra = "" if seed is None else f"pct_seed = {seed}"
    s = session(config(port, case, extra), ip="192.0.2.10")
    seen = []
    for _ in range(n):
        out = run_message(s, "x@other.org", ["bob@example.com"], message(f"a@{domain}"))
        seen.append(disposition(out))
        if seen[-1] != "reject":
            assert [r for r, _, _ in dmarc_results(out)] == ["fail"]  # pct lowers the policy only
    return seen


# With n = 200 and pct = 50 the sampled count is Binomial(200, 0.5): mean 100,
# standard deviation 7.1; 65..135 is +-4.9 sd (outside it: p < 1e-6).
SAMPLED = range(65, 136)


@pytest.mark.parametrize(
    "domain, applied, lowered",
    [("pct50.org", "reject", "quarantine"), ("pct50q.org", "quarantine", "none")],
    ids=["reject-lowered-to-quarantine", "quarantine-lowered-to-none"],
)
def test_pct_50_applies_the_policy_to_half_and_the_next_lower_to_the_rest(
    dns_port: int, domain: str, applied: str, lowered: str
) -> None:
    """RFC 7489 6.6.4: a failing message outside the pct sample gets the next
    lower policy (reject -> quarantine, quarantine -> none), never no policy."""
    seen = sample_run(dns_port, domain, seed=None)  # the daemon's own randomness
    assert set(seen) == {applied, lowered}, seen
    assert seen.count(applied) in SAMPLED, seen.count(applied)
    seeded = sample_run(dns_port, domain, seed=18)
    assert set(seeded) == {applied, lowered} and seeded.count(applied) in SAMPLED
    # A seed makes a run repeatable, message by message; another seed draws anew.
    assert sample_run(dns_port, domain, seed=18) == seeded
    assert sample_run(dns_port, domain, seed=19) != seeded


def test_pct_sampling_is_drawn_per_message() -> None:
    """sampled() follows pct across its range: 0 never, 100 always, k about k%."""
    runtime = build_runtime(load_text(config(53, extra="pct_seed = 7")))
    (dmarc,) = [p.plugin for p in runtime.plugins if p.name == "dmarc"]
    assert not any(dmarc.sampled(0) for _ in range(1000))
    assert all(dmarc.sampled(100) for _ in range(1000))
    for pct in (1, 10, 50, 90, 99):
        hits = sum(dmarc.sampled(pct) for _ in range(10_000))
        # Binomial(10000, pct/100): sd <= 50; allow 5 sd.
        assert abs(hits - pct * 100) <= 250, (pct, hits)


def test_aggregate_report_data_goes_to_a_file_per_day(dns_port: int, tmp_path) -> None:
    case = Case("r", "", ("pass", "bounce.relaxed.org"), ("fail", "relaxed.org"), "", "")
    s = session(config(dns_port, case, f'report_dir = "{tmp_path}"'), ip="192.0.2.10")
    run_message(s, "x@bounce.relaxed.org", ["bob@example.com"], message("a@relaxed.org"))
    (path,) = tmp_path.iterdir()
    assert path.name.startswith("dmarc-") and path.suffix == ".jsonl"
    (entry,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert entry["source_ip"] == "192.0.2.10"
    assert entry["header_from"] == "relaxed.org"
    assert entry["policy_published"]["p"] == "reject"
    assert entry["policy_published"]["rua"] == "mailto:dmarc@relaxed.org"
    assert (entry["disposition"], entry["spf_aligned"], entry["dkim_aligned"]) == (
        "none",
        "pass",
        "fail",
    )
    assert entry["auth_results"]["dkim"] == [
        {"domain": "relaxed.org", "selector": "s1", "result": "fail"}
    ]


# (domain, its Organizational Domain) under rules of the list as Debian ships
# it: plain, wildcard and exception rules, the private section, an IDN
# suffix in its A-label form, a name the list does not know.
ORG_DOMAINS = [
    ("a.b.example.org", "example.org"),
    ("mail.example.co.uk", "example.co.uk"),
    ("co.uk", "co.uk"),
    ("Mail.Example.CO.UK.", "example.co.uk"),
    ("x.shop.b.ck", "shop.b.ck"),  # *.ck
    ("a.www.ck", "www.ck"),  # !www.ck
    ("a.b.city.kawasaki.jp", "city.kawasaki.jp"),  # !city.kawasaki.jp beats *.kawasaki.jp
    ("a.b.blogspot.com", "b.blogspot.com"),  # private section
    ("www.xn--80ak6aa92e.xn--p1ai", "xn--80ak6aa92e.xn--p1ai"),  # .рф
    ("a.b.internal-name", "b.internal-name"),  # no rule: the implicit "*"
]


def test_the_public_suffix_list_is_debians_file(dns_port: int) -> None:
    runtime = build_runtime(load_text(config(dns_port)))
    (dmarc,) = [p.plugin for p in runtime.plugins if p.name == "dmarc"]
    assert re.fullmatch(
        r"public suffix list: /usr/share/publicsuffix/public_suffix_list.dat "
        r"\(\d{4,} rules, file dated \d{4}-\d\d-\d\d\)",
        dmarc.describe()[0],
    )
    assert [dmarc.org_domain(d) for d, _ in ORG_DOMAINS] == [org for _, org in ORG_DOMAINS]


@pytest.mark.parametrize(
    "content, why",
    [(None, "no such file"), ("// only a comment\n", "no rules in it"), (b"\xff\xfe", "")],
    ids=["missing", "empty", "not-utf-8"],
)
def test_a_suffix_list_that_cannot_be_used_is_a_config_error(
    dns_port: int, tmp_path, content, why
) -> None:
    path = tmp_path / "psl.dat"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        build_runtime(load_text(config(dns_port, extra=f'psl_file = "{path}"')))
    assert "plugins.dmarc.psl_file" in str(err.value) and str(path) in str(err.value)
    assert why in str(err.value)


def test_the_system_list_missing_names_the_package_to_install(monkeypatch, tmp_path) -> None:
    missing = str(tmp_path / "public_suffix_list.dat")
    monkeypatch.setattr(_psl, "SYSTEM_PSL", missing)  # as on a host without the package
    with pytest.raises(_psl.SuffixListError) as err:
        _psl.load(missing)
    assert str(err.value) == (
        f"{missing}: no such file: install Debian's publicsuffix or Fedora/EL's "
        "publicsuffix-list package"
    )


def test_observe_mode_writes_no_report_data_and_refuses_nothing(dns_port: int, tmp_path) -> None:
    case = Case("r", "", ("pass", "other.org"), None, "", "")
    extra = f'report_dir = "{tmp_path}"\nmode = "observe"'
    s = session(config(dns_port, case, extra), ip="192.0.2.10")
    out = run_message(s, "x@example.net", ["bob@example.com"], message("a@relaxed.org"))
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE
    assert list(tmp_path.iterdir()) == []
