"""The dkim plugin: keys and records from the loopback DNS server, signatures
checked both ways with dkimpy as the independent other side."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import authres
import dkim as dkimpy
import dns.resolver
import pytest

from miltrd.api import HeaderInsertion, VerdictKind
from miltrd.chain import build_runtime
from miltrd.config import ConfigError, load_text

from ..dnsserver import dns_server, silent_dns
from .dkim_keys import (
    KeyPair,
    key_record,
    make_key,
    public_record_of_pem,
    record_line,
    weak_rsa_pem,
)
from .helpers import delivered, run_message, session

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: signed by miltrd\r\n"
    b"Date: Tue, 01 Dec 2026 01:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"this is signed.\r\n"
)


class World:
    def __init__(self, folder: Path, port: int, keys: dict[str, KeyPair]) -> None:
        self.folder, self.port, self.keys = folder, port, keys
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = port
        self.resolver = resolver

    def dnsfunc(self, name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = self.resolver.resolve(name.decode(), "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    def verify_all(self, raw: bytes) -> list[bool]:
        d = dkimpy.DKIM(raw)
        n = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
        out = []
        for i in range(n):
            try:
                out.append(bool(dkimpy.DKIM(raw).verify(i, dnsfunc=self.dnsfunc)))
            except dkimpy.ValidationError:  # dkimpy raises for a body hash mismatch
                out.append(False)
        return out

    def config(self, extra: str = "", chain: str = '["dkim"]', keys: str | None = None) -> str:
        if keys is None:
            keys = "".join(
                f'[[plugins.dkim.keys]]\ndomain = "{k.domain}"\nselector = "{k.selector}"\n'
                f'key_file = "{k.path}"\nalgorithm = "{k.algorithm}"\n'
                for k in (self.keys["rsa"], self.keys["ed"])
            )
        return (
            '[internal]\nnetworks = ["10.0.0.0/8"]\ndomains = ["example.com"]\n'
            'authserv_id = "mx.example.com"\n'
            f"[chain]\nplugins = {chain}\n"
            + ('[plugins.upper]\nuse = "tests.testplugins:UpperBody"\n' if "upper" in chain else "")
            + ('[plugins.swap]\nuse = "tests.testplugins:SwapContent"\n' if "swap" in chain else "")
            + f'[plugins.dkim]\nnameservers = ["127.0.0.1:{self.port}"]\ndns_timeout = 2.0\n'
            f"{extra}\n{keys}"
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("dkim")
    keys = {
        "rsa": make_key(folder, "example.com", "rsa2026"),
        "ed": make_key(folder, "example.com", "ed2026", "ed25519-sha256"),
        "org": make_key(folder, "example.org", "sel1"),
        "org-ed": make_key(folder, "example.org", "ed1", "ed25519-sha256"),
    }
    weak = weak_rsa_pem(1024)
    (folder / "weak.pem").write_bytes(weak)
    zone = "".join(key_record(k) for k in keys.values())
    zone += record_line("weak._domainkey.example.org", public_record_of_pem(weak))
    zone += record_line("broken._domainkey.example.org", "v=DKIM1; k=rsa; p=notbase64!!")
    with dns_server(zone) as port:
        yield World(folder, port, keys)


def signed_elsewhere(world: World, key: KeyPair | None = None, **kw) -> bytes:
    """A message from example.org signed by the other side (dkimpy)."""
    raw = MESSAGE.replace(b"alice@example.com", b"carol@example.org")
    if key is None:
        key = world.keys["org"]
    selector = kw.pop("selector", key.selector)
    privkey = kw.pop("privkey", key.signing_bytes)
    sig = dkimpy.sign(
        raw,
        selector.encode(),
        b"example.org",
        privkey,
        signature_algorithm=kw.pop("algorithm", key.algorithm).encode(),
        canonicalize=(b"relaxed", b"relaxed"),
        **kw,
    )
    return sig + raw


def incoming(world: World, raw: bytes, extra: str = ""):
    s = session(world.config(extra), ip="192.0.2.55")
    return run_message(s, "carol@example.org", ["bob@example.com"], raw)


def dkim_results(out) -> list[tuple[str, dict[str, str], str]]:
    values = [
        c.value
        for c in out.changes
        if isinstance(c, HeaderInsertion) and c.name == "Authentication-Results"
    ]
    assert len(values) == 1, values
    parsed = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {values[0]}")
    assert parsed.authserv_id == "mx.example.com"
    return [
        (
            r.method and r.result,
            {f"{p.type}.{p.name}": p.value for p in r.properties},
            r.reason or "",
        )
        for r in parsed.results
        if r.method == "dkim"
    ]


# --- signing --------------------------------------------------------------


def test_outgoing_mail_is_signed_with_rsa_and_ed25519_and_verifies(world: World) -> None:
    s = session(world.config(), ip="10.1.2.3")
    out = run_message(s, "alice@example.com", ["bob@example.net"], MESSAGE)
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE
    sigs = [c for c in out.changes if isinstance(c, HeaderInsertion) and c.name == "DKIM-Signature"]
    assert len(sigs) == 2 and all(c.index == 0 for c in sigs)
    assert "a=rsa-sha256" in sigs[0].value and "s=rsa2026" in sigs[0].value
    assert "a=ed25519-sha256" in sigs[1].value and "s=ed2026" in sigs[1].value
    for sig in sigs:
        assert "c=relaxed/relaxed" in sig.value and "d=example.com" in sig.value
        # From is over-signed: once for the field, once more so none can be added.
        h = sig.value.split("h=", 1)[1].split(";", 1)[0].replace(" ", "").split(":")
        assert h.count("from") == 2
    raw = delivered(MESSAGE, out.changes)
    assert world.verify_all(raw) == [True, True]


def test_an_added_from_header_breaks_the_signature(world: World) -> None:
    s = session(world.config(), ip="10.1.2.3")
    out = run_message(s, "alice@example.com", ["bob@example.net"], MESSAGE)
    raw = delivered(MESSAGE, out.changes)
    forged = raw.replace(b"\r\n\r\n", b"\r\nFrom: ceo@example.com\r\n\r\n", 1)
    assert world.verify_all(forged) == [False, False]


def test_signing_sees_the_body_an_earlier_plugin_replaced(world: World) -> None:
    s = session(world.config(chain='["upper", "dkim"]'), ip="10.1.2.3")
    out = run_message(s, "alice@example.com", ["bob@example.net"], MESSAGE)
    raw = delivered(MESSAGE, out.changes)
    assert b"HELLO BOB" in raw
    assert world.verify_all(raw) == [True, True]


def test_signing_sees_the_headers_and_body_an_earlier_plugin_changed(world: World) -> None:
    # SwapContent changes Subject (a signed field), adds a field and replaces the body.
    s = session(world.config(chain='["swap", "dkim"]'), ip="10.1.2.3")
    out = run_message(s, "alice@example.com", ["bob@example.net"], MESSAGE)
    raw = delivered(MESSAGE, out.changes)
    assert b"Subject: swapped" in raw and b"new body" in raw
    assert world.verify_all(raw) == [True, True]


def test_a_subdomain_is_signed_with_the_parent_domains_key(world: World) -> None:
    msg = MESSAGE.replace(b"alice@example.com", b"alice@news.example.com")
    s = session(world.config(), ip="10.1.2.3")
    out = run_message(s, "alice@news.example.com", ["bob@example.net"], msg)
    raw = delivered(msg, out.changes)
    assert b"d=example.com" in raw
    assert world.verify_all(raw) == [True, True]


def test_mail_from_a_domain_without_a_key_is_not_signed(world: World) -> None:
    msg = MESSAGE.replace(b"alice@example.com", b"alice@elsewhere.example")
    s = session(world.config(), ip="10.1.2.3")
    out = run_message(s, "alice@elsewhere.example", ["bob@example.net"], msg)
    assert not [c for c in out.changes if getattr(c, "name", "") == "DKIM-Signature"]


def test_an_unreadable_key_tempfails_unless_told_otherwise(world: World, tmp_path) -> None:
    key = make_key(tmp_path, "example.com", "gone")
    keys = f'[[plugins.dkim.keys]]\ndomain = "example.com"\nselector = "gone"\nkey_file = "{key.path}"\n'
    runtime_config = world.config(keys=keys)
    s = session(runtime_config, ip="10.1.2.3")
    os.unlink(key.path)  # removed after the start: the message must not leave unsigned
    out = run_message(s, "alice@example.com", ["bob@example.net"], MESSAGE)
    assert out.final is not None and out.final.kind is VerdictKind.TEMPFAIL
    assert out.final.reply is not None and out.final.reply.code == 451

    key = make_key(tmp_path, "example.com", "gone")
    s = session(world.config('on_key_error = "send-unsigned"', keys=keys), ip="10.1.2.3")
    os.unlink(key.path)
    out = run_message(s, "alice@example.com", ["bob@example.net"], MESSAGE)
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE
    assert not [c for c in out.changes if getattr(c, "name", "") == "DKIM-Signature"]


@pytest.mark.parametrize(
    "problem, expected",
    [
        ("world-readable", "readable by every user"),
        ("missing", "No such file"),
        ("wrong-algorithm", "holds another kind of key"),
        ("short", "use 2048 or more"),
    ],
)
def test_key_file_problems_name_the_key(world: World, tmp_path, problem, expected) -> None:
    key = make_key(tmp_path, "example.com", "k")
    algorithm = "rsa-sha256"
    if problem == "world-readable":
        key.path.chmod(0o644)
    elif problem == "missing":
        key.path.unlink()
    elif problem == "wrong-algorithm":
        algorithm = "ed25519-sha256"
    elif problem == "short":
        key.path.write_bytes(weak_rsa_pem(1024))
    keys = (
        f'[[plugins.dkim.keys]]\ndomain = "example.com"\nselector = "k"\n'
        f'key_file = "{key.path}"\nalgorithm = "{algorithm}"\n'
    )
    with pytest.raises(ConfigError) as err:
        build_runtime(load_text(world.config(keys=keys)))
    assert "plugins.dkim.keys[0].key_file" in str(err.value)
    assert expected in str(err.value)


# --- verifying --------------------------------------------------------------


def test_rsa_and_ed25519_signatures_from_elsewhere_pass(world: World) -> None:
    raw = signed_elsewhere(world)
    raw = signed_elsewhere(world, world.keys["org-ed"]).split(b"\r\nFrom:", 1)[0] + b"\r\n" + raw
    out = incoming(world, raw)
    results = dkim_results(out)
    assert [r[0] for r in results] == ["pass", "pass"]
    ed, rsa_ = results
    assert ed[1]["header.d"] == "example.org" and ed[1]["header.s"] == "ed1"
    assert ed[1]["header.a"] == "ed25519-sha256"
    assert rsa_[1]["header.a"] == "rsa-sha256" and len(rsa_[1]["header.b"]) == 8


def test_a_changed_body_fails(world: World) -> None:
    raw = signed_elsewhere(world).replace(b"this is signed", b"this is forged")
    assert [r[0] for r in dkim_results(incoming(world, raw))] == ["fail"]


def test_no_signature_is_none(world: World) -> None:
    assert [r[0] for r in dkim_results(incoming(world, MESSAGE))] == ["none"]


def test_no_key_is_permerror(world: World) -> None:
    raw = signed_elsewhere(world, selector="nokey")
    ((result, props, reason),) = dkim_results(incoming(world, raw))
    assert (result, props["header.s"]) == ("permerror", "nokey")
    assert "no key" in reason


def test_a_broken_key_record_is_permerror(world: World) -> None:
    raw = signed_elsewhere(world, selector="broken")
    assert [r[0] for r in dkim_results(incoming(world, raw))] == ["permerror"]


def test_a_key_shorter_than_min_key_bits_is_permerror(world: World) -> None:
    weak = (world.folder / "weak.pem").read_bytes()
    raw = signed_elsewhere(world, selector="weak", privkey=weak)
    assert [r[0] for r in dkim_results(incoming(world, raw))] == ["pass"]
    ((result, _props, reason),) = dkim_results(incoming(world, raw, "min_key_bits = 2048"))
    assert result == "permerror" and "too small" in reason


def test_rsa_sha1_is_not_accepted(world: World) -> None:
    raw = signed_elsewhere(world, algorithm="rsa-sha1")
    ((result, _props, reason),) = dkim_results(incoming(world, raw))
    assert result == "permerror" and "RFC 8301" in reason


def test_l_tag_leaving_body_unsigned_is_neutral_by_default(world: World) -> None:
    raw = signed_elsewhere(world, length=True) + b"Appended: click here\r\n"
    ((result, _props, reason),) = dkim_results(incoming(world, raw))
    assert result == "neutral" and "unsigned" in reason
    (res,) = dkim_results(incoming(world, raw, 'partial_body = "pass"'))
    assert res[0] == "pass"
    whole = signed_elsewhere(world, length=True)
    assert [r[0] for r in dkim_results(incoming(world, whole))] == ["pass"]


def test_a_silent_dns_server_is_temperror_within_the_bound(world: World) -> None:
    import time

    raw = signed_elsewhere(world)
    with silent_dns() as port:
        config = world.config().replace(f"127.0.0.1:{world.port}", f"127.0.0.1:{port}")
        config = config.replace("dns_timeout = 2.0", "dns_timeout = 1.0")
        s = session(config, ip="192.0.2.55")
        started = time.monotonic()
        out = run_message(s, "carol@example.org", ["bob@example.com"], raw)
        elapsed = time.monotonic() - started
    assert [r[0] for r in dkim_results(out)] == ["temperror"]
    assert elapsed < 10


def test_policy_reject_on_fail(world: World) -> None:
    raw = signed_elsewhere(world).replace(b"this is signed", b"this is forged")
    out = incoming(world, raw, '[plugins.dkim.policy]\nfail = "reject"')
    assert out.final is not None and out.final.kind is VerdictKind.REJECT
    assert out.final.reply is not None
    assert (out.final.reply.code, out.final.reply.xcode) == (550, "5.7.20")


def test_one_good_signature_is_enough_for_the_policy(world: World) -> None:
    good = signed_elsewhere(world)
    bad = signed_elsewhere(world, selector="nokey").split(b"\r\nFrom:", 1)[0] + b"\r\n"
    out = incoming(world, bad + good, '[plugins.dkim.policy]\npermerror = "reject"')
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE
    assert sorted(r[0] for r in dkim_results(out)) == ["pass", "permerror"]
