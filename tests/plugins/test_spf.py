"""The spf plugin against a real DNS server on loopback (dnsmasq)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from miltrd.api import HeaderAddition, HeaderInsertion, VerdictKind

from ..dnsserver import dns_server, silent_dns
from .helpers import run_message, session


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    with dns_server() as port:
        yield port


def spf_config(port: int, extra: str = "", internal: str = "") -> str:
    return (
        f'[internal]\nnetworks = ["10.0.0.0/8"]\ndomains = ["example.com"]\n{internal}\n'
        '[chain]\nplugins = ["spf"]\n'
        f'[plugins.spf]\nnameservers = ["127.0.0.1:{port}"]\ndns_timeout = 3.0\n{extra}\n'
    )


def headers(outcome, name: str) -> list[str]:
    """Added values, unfolded (miltrd folds long values with LF + white space)."""
    return [
        m.value.replace("\n", "")
        for m in outcome.changes
        if isinstance(m, HeaderAddition | HeaderInsertion) and m.name == name
    ]


def test_pass_adds_received_spf(dns_port: int) -> None:
    s = session(spf_config(dns_port), ip="192.0.2.55", helo="client.example.org")
    out = run_message(s, "alice@example.org", ["bob@example.com"])
    assert out.mail.kind is VerdictKind.CONTINUE
    (value,) = headers(out, "Received-SPF")
    assert value.startswith("Pass (mx.example.com: domain of example.org designates 192.0.2.55")
    assert "client-ip=192.0.2.55;" in value
    assert 'envelope-from="alice@example.org";' in value
    assert "helo=client.example.org;" in value
    assert "receiver=mx.example.com;" in value


def test_fail_rejects_with_5_7_1_and_the_explanation(dns_port: int) -> None:
    s = session(spf_config(dns_port), ip="203.0.113.9")
    out = run_message(s, "mallory@example.org", ["bob@example.com"])
    assert out.mail.kind is VerdictKind.REJECT
    reply = out.mail.reply
    assert reply is not None and (reply.code, reply.xcode) == (550, "5.7.1")
    assert reply.lines[0] == "SPF fail for sender domain example.org"
    assert "SPF fail - not authorized" in reply.lines[1]


def test_domain_published_explanation_is_in_the_reply(dns_port: int) -> None:
    s = session(spf_config(dns_port), ip="203.0.113.9")
    out = run_message(s, "x@explained.example.net", ["bob@example.com"])
    assert out.mail.reply is not None
    assert out.mail.reply.lines[1] == (
        "Mail from explained.example.net must come from its own servers"
    )


@pytest.mark.parametrize(
    "sender, result",
    [
        ("a@soft.example.net", "SoftFail"),
        ("a@neutral.example.net", "Neutral"),
        ("a@broken.example.net", "PermError"),
        ("a@nothing.example.net", "None"),
    ],
)
def test_other_results_mark_by_default(dns_port: int, sender: str, result: str) -> None:
    s = session(spf_config(dns_port), ip="203.0.113.9")
    out = run_message(s, sender, ["bob@example.com"])
    assert out.mail.kind is VerdictKind.CONTINUE
    (value,) = headers(out, "Received-SPF")
    assert value.startswith(result + " ")


def test_policy_table_and_per_domain_override(dns_port: int) -> None:
    extra = (
        '[plugins.spf.policy]\nsoftfail = "reject"\nfail = "tempfail"\n'
        '[plugins.spf.domains."example.org"]\nfail = "mark"\n'
    )
    s = session(spf_config(dns_port, extra), ip="203.0.113.9")
    soft = run_message(s, "a@soft.example.net", ["b@example.com"])
    assert soft.mail.kind is VerdictKind.REJECT
    s = session(spf_config(dns_port, extra), ip="203.0.113.9")
    overridden = run_message(s, "a@example.org", ["b@example.com"])
    assert overridden.mail.kind is VerdictKind.CONTINUE
    assert headers(overridden, "Received-SPF")[0].startswith("Fail ")


def test_continue_action_adds_no_header(dns_port: int) -> None:
    extra = '[plugins.spf.policy]\nneutral = "continue"\n'
    s = session(spf_config(dns_port, extra), ip="203.0.113.9")
    out = run_message(s, "a@neutral.example.net", ["b@example.com"])
    assert out.changes == []


def test_null_sender_checks_the_helo_identity(dns_port: int) -> None:
    s = session(spf_config(dns_port), ip="203.0.113.9", helo="helo.example.org")
    out = run_message(s, "", ["b@example.com"])
    assert out.mail.kind is VerdictKind.REJECT
    assert out.mail.reply is not None
    assert out.mail.reply.lines[0] == "SPF fail for HELO name helo.example.org"


def test_check_helo_as_well(dns_port: int) -> None:
    s = session(spf_config(dns_port, "check_helo = true"), ip="192.0.2.7", helo="helo.example.org")
    out = run_message(s, "a@neutral.example.net", ["b@example.com"])
    values = headers(out, "Received-SPF")
    assert len(values) == 2
    assert "identity=helo" in values[0] and values[0].startswith("Pass")
    assert "identity=mailfrom" in values[1] and values[1].startswith("Neutral")


def test_authentication_results(dns_port: int) -> None:
    s = session(spf_config(dns_port, internal='authserv_id = "mx.example.com"'), ip="192.0.2.55")
    out = run_message(s, "alice@example.org", ["bob@example.com"])
    assert headers(out, "Authentication-Results") == [
        "mx.example.com; spf=pass smtp.mailfrom=alice@example.org"
    ]


def test_best_guess_for_domains_without_a_record(dns_port: int) -> None:
    s = session(spf_config(dns_port, "best_guess = true"), ip="203.0.113.5")
    out = run_message(s, "a@noreco.example.net", ["b@example.com"])
    (value,) = headers(out, "Received-SPF")
    assert value.startswith("Pass ") and value.endswith("x-best-guess=yes")


@pytest.mark.parametrize(
    "ip, macros",
    [("10.1.2.3", {}), ("203.0.113.9", {"{auth_authen}": "alice"})],
    ids=["internal-network", "authenticated"],
)
def test_internal_and_authenticated_clients_are_skipped(dns_port, ip, macros, caplog) -> None:
    s = session(spf_config(dns_port), ip=ip, macros=macros)
    with caplog.at_level("INFO", logger="miltrd"):
        out = run_message(s, "mallory@example.org", ["bob@example.com"])
    assert out.mail.kind is VerdictKind.CONTINUE
    assert out.changes == []
    assert "not checked:" in caplog.text


def test_trusted_forwarder_is_skipped(dns_port: int) -> None:
    s = session(spf_config(dns_port, 'trusted_forwarders = ["203.0.113.0/24"]'), ip="203.0.113.9")
    out = run_message(s, "mallory@example.org", ["bob@example.com"])
    assert out.mail.kind is VerdictKind.CONTINUE


@pytest.mark.parametrize("ip, result", [("2001:db8::25", "Pass"), ("2001:db9::25", "Fail")])
def test_ipv6_client(dns_port: int, ip: str, result: str) -> None:
    extra = '[plugins.spf.policy]\nfail = "mark"\n'
    s = session(spf_config(dns_port, extra), ip=ip)
    out = run_message(s, "a@v6.example.net", ["b@example.com"])
    (value,) = headers(out, "Received-SPF")
    assert value.startswith(result + " ") and f"client-ip={ip};" in value


def test_ipv4_mapped_ipv6_client(dns_port: int) -> None:
    s = session(spf_config(dns_port), ip="::ffff:192.0.2.55")
    out = run_message(s, "alice@example.org", ["bob@example.com"])
    assert headers(out, "Received-SPF")[0].startswith("Pass")


def test_silent_dns_server_gives_temperror_within_the_timeout() -> None:
    with silent_dns() as port:
        s = session(spf_config(port).replace("dns_timeout = 3.0", "dns_timeout = 1.0"))
        started = time.monotonic()
        out = run_message(s, "a@example.org", ["b@example.com"])
        elapsed = time.monotonic() - started
    assert out.mail.kind is VerdictKind.TEMPFAIL
    assert out.mail.reply is not None and out.mail.reply.xcode == "4.4.3"
    assert elapsed < 5  # bounded by dns_timeout (+1 s), not by the MTA's timeout


def test_bad_nameserver_option_is_a_config_error() -> None:
    from miltrd.config import ConfigError

    with pytest.raises(ConfigError) as info:
        session('[chain]\nplugins = ["spf"]\n[plugins.spf]\nnameservers = ["dns.example:53"]\n')
    assert "plugins.spf.nameservers[0]" in str(info.value)


def test_temperror_reply_reveals_nothing_internal_and_the_log_has_the_detail(caplog) -> None:
    # A refused (not silent) port: pyspf's error text names our resolver.
    from ..tools import free_port

    port = free_port()
    s = session(spf_config(port).replace("dns_timeout = 3.0", "dns_timeout = 1.0"))
    with caplog.at_level("INFO", logger="miltrd"):
        out = run_message(s, "a@example.org", ["b@example.com"])
    reply = out.mail.reply
    assert out.mail.kind is VerdictKind.TEMPFAIL and reply is not None
    text = " ".join(reply.lines)
    assert text == (
        "SPF temperror for sender domain example.org "
        "SPF could not be checked (DNS lookup failed), try again later"
    )
    assert "127.0.0.1" not in text and str(port) not in text
    assert f"127.0.0.1@{port}" in caplog.text  # the detail is in the log


def test_the_lookup_limit_belongs_to_each_spf_entry_not_the_process() -> None:
    import spf as pyspf

    twice = (
        'txt-record=twice.example.net,"v=spf1 include:soft.example.net include:example.org -all"\n'
    )
    before = pyspf.MAX_LOOKUP
    with dns_server(twice) as port:
        roomy = session(spf_config(port, "max_dns_lookups = 10"), ip="192.0.2.55")
        tight = session(spf_config(port, "max_dns_lookups = 1"), ip="192.0.2.55")
        assert before == pyspf.MAX_LOOKUP  # building an entry changes nothing process-wide
        # The entry built first keeps its own limit after another was built.
        (roomy_header,) = headers(
            run_message(roomy, "a@twice.example.net", ["b@example.com"]), "Received-SPF"
        )
        (tight_header,) = headers(
            run_message(tight, "a@twice.example.net", ["b@example.com"]), "Received-SPF"
        )
    assert roomy_header.startswith("Pass ")
    assert tight_header.startswith("PermError ")
