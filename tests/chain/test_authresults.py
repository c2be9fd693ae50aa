"""Authentication results through the chain: one RFC 8601 header per message,
at the top, after forged ones claiming our authserv-id are removed."""

from __future__ import annotations

import authres
import pytest

from miltrd.api import AuthResult, HeaderAddition, HeaderChange, HeaderInsertion, VerdictKind
from miltrd.api.authresults import authserv_id_of, format_authentication_results
from miltrd.chain import build_runtime
from miltrd.config import ConfigError, load_text
from miltrd.mta import apply_changes, split_message
from miltrd.protocol import AddHeader as WireAdd
from miltrd.protocol import ChangeHeader as WireChange
from miltrd.protocol import InsertHeader as WireInsert

from ..plugins.helpers import run_message, session

MESSAGE = (
    b"Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=forged@example.com\r\n"
    b"Received: from somewhere\r\n"
    b"Authentication-Results: other.example.net; dkim=pass header.d=example.net\r\n"
    b"Authentication-Results: (a comment) MX.Example.COM; dkim=pass header.d=example.com\r\n"
    b"From: a@example.org\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"body\r\n"
)

CHAIN = """\
[internal]
networks = []
authserv_id = "mx.example.com"
[chain]
plugins = ["first", "second", "reader"]
[plugins.first]
use = "tests.testplugins:PublishResult"
method = "spf"
result = "pass"
properties = {{"smtp.mailfrom" = "a@example.org"}}
[plugins.second]
use = "tests.testplugins:PublishResult"
method = "dkim"
result = "fail"
{second}
properties = {{"header.d" = "example.org", "header.s" = "sel", "header.b" = "ab/+cd=="}}
[plugins.reader]
use = "tests.testplugins:ReadResults"
"""


def delivered(toml: str, raw: bytes = MESSAGE) -> tuple[list[tuple[str, str]], list]:
    """The headers of the message as the MTA delivers it, and the changes."""
    out = run_message(session(toml), "a@example.org", ["b@example.com"], raw)
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE
    wire = []
    for m in out.changes:
        if isinstance(m, HeaderAddition):
            wire.append(WireAdd(m.name, m.value))
        elif isinstance(m, HeaderInsertion):
            wire.append(WireInsert(m.index, m.name, m.value))
        elif isinstance(m, HeaderChange):
            wire.append(WireChange(m.index, m.name, m.value))
    headers, body = split_message(raw)
    headers, _ = apply_changes(headers, body, wire)
    return headers, out.changes


def test_one_header_at_the_top_with_every_result_parsed_by_authres() -> None:
    headers, _ = delivered(CHAIN.format(second=""))
    name, value = headers[0]
    assert name == "Authentication-Results"
    parsed = authres.AuthenticationResultsHeader.parse(f"{name}: {value}")
    assert parsed.authserv_id == "mx.example.com"
    got = [
        (r.method, r.result, [(p.type, p.name, p.value) for p in r.properties])
        for r in parsed.results
    ]
    assert got == [
        ("spf", "pass", [("smtp", "mailfrom", "a@example.org")]),
        (
            "dkim",
            "fail",
            [("header", "d", "example.org"), ("header", "s", "sel"), ("header", "b", "ab/+cd==")],
        ),
    ]
    ours = [v for n, v in headers if n == "Authentication-Results"]
    assert len([v for v in ours if authserv_id_of(v) == "mx.example.com"]) == 1


def test_forged_headers_claiming_our_id_are_removed_others_kept() -> None:
    headers, mutations = delivered(CHAIN.format(second=""))
    values = [v for n, v in headers if n == "Authentication-Results"]
    assert not any("forged@" in v for v in values)
    assert not any("(a comment)" in v for v in values)
    assert any(v.startswith("other.example.net;") for v in values)
    # Deleted from the highest occurrence down, so no index moves under a later one.
    deletes = [(m.index, m.value) for m in mutations if isinstance(m, HeaderChange)]
    assert deletes == [(3, ""), (1, "")]


def test_later_plugins_read_earlier_results() -> None:
    headers, _ = delivered(CHAIN.format(second=""))
    assert ("X-Earlier-Results", "first:spf=pass, second:dkim=fail") in headers


def test_an_observing_plugins_result_is_read_but_not_written() -> None:
    headers, _ = delivered(CHAIN.format(second='mode = "observe"'))
    top = headers[0][1]
    assert "spf=pass" in top and "dkim=" not in top
    assert ("X-Earlier-Results", "first:spf=pass, second:dkim=fail") in headers


def test_without_results_forged_headers_still_go() -> None:
    toml = (
        '[internal]\nnetworks = []\nauthserv_id = "mx.example.com"\n'
        '[chain]\nplugins = ["nothing"]\n'
        '[plugins.nothing]\nuse = "tests.testplugins:PublishResult"\n'
        '[plugins.nothing.when]\nsenders = ["nobody@nowhere.example"]\n'
    )
    headers, _ = delivered(toml)
    values = [v for n, v in headers if n == "Authentication-Results"]
    assert values == ["other.example.net; dkim=pass header.d=example.net"]


def test_authserv_id_defaults_to_the_mta_host_name() -> None:
    toml = CHAIN.format(second="").replace('authserv_id = "mx.example.com"\n', "")
    headers, _ = delivered(toml)
    # The test session's j macro is mx.example.com (tests/plugins/helpers.py).
    assert headers[0][1].startswith("mx.example.com; spf=pass")


def test_publishing_without_declaring_tempfails() -> None:
    toml = (
        '[chain]\nplugins = ["bad"]\n[plugins.bad]\nuse = "tests.testplugins:PublishUndeclared"\n'
    )
    out = run_message(session(toml), "a@example.org", ["b@example.com"], MESSAGE)
    assert out.final is not None and out.final.kind is VerdictKind.TEMPFAIL


def test_chain_negotiates_headers_and_header_changes() -> None:
    runtime = build_runtime(load_text(CHAIN.format(second="")))
    from miltrd.api import Action, Phase

    assert Action.AUTH_RESULTS in runtime.declared.actions
    assert Phase.HEADER & runtime.declared.observes


def test_bad_authserv_id_names_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        load_text('[internal]\nauthserv_id = "mx.example.com; spf=pass"\n')
    assert "internal.authserv_id" in str(err.value)


def test_spf_authserv_id_moved_names_the_new_place() -> None:
    with pytest.raises(ConfigError) as err:
        build_runtime(
            load_text('[chain]\nplugins = ["spf"]\n[plugins.spf]\nauthserv_id = "mx.example.com"\n')
        )
    assert "plugins.spf.authserv_id" in str(err.value)
    assert "[internal]" in str(err.value)


def test_values_are_quoted_when_not_tokens_and_long_lists_split() -> None:
    r = AuthResult("spf", "pass", (("smtp.mailfrom", '"odd user"@example.org'),))
    assert r.render() == 'spf=pass smtp.mailfrom="\\"odd user\\"@example.org"'
    assert AuthResult("dkim", "pass", (("header.i", "@exämple.org"),)).render() == (
        'dkim=pass header.i="@ex?mple.org"'
    )
    many = [AuthResult("dkim", "pass", (("header.b", "x" * 90),))] * 30
    values = format_authentication_results("mx.example.com", many)
    assert len(values) > 1
    assert all(len("Authentication-Results: " + v) <= 998 for v in values)
    for v in values:
        parsed = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {v}")
        assert parsed.authserv_id == "mx.example.com"
    with pytest.raises(ValueError):
        AuthResult("dkim pass", "x")
