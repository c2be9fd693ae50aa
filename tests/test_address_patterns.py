"""One address-pattern language: the same table through every user of it.

Each row is run through the API itself, wiretap's archive rules (senders
and recipients) and tap rules, bcc's rules (senders and recipients) and a
``when`` table (senders and recipients): all must agree with the row.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from miltrd.api import AddressPattern, RecipientAddition, matches_any
from miltrd.chain import build_runtime
from miltrd.config import ConfigError, load_text

from .plugins.helpers import run_message, session

TABLE = [
    ("user@example.com", "user@example.com", True),
    ("user@example.com", "User@Example.COM", True),
    ("user@example.com", "other@example.com", False),
    ("user@example.com", "user@example.com.evil", False),
    ("@example.com", "a@example.com", True),
    ("@example.com", "b@mx.example.com", True),
    ("@example.com", "c@notexample.com", False),
    ("@example.com", "d@example.com.evil", False),
    ("@Example.COM.", "e@example.com", True),
    ("*@example.com", "a@example.com", True),
    ("*@example.com", "a@sub.example.com", False),
    ("sales-?@*.example.org", "sales-1@eu.example.org", True),
    ("sales-?@*.example.org", "sales-12@eu.example.org", False),
    ("[ab]*@example.com", "bob@example.com", True),
    ("[ab]*@example.com", "carol@example.com", False),
    ("<>", "", True),
    ("<>", "a@example.com", False),
    ("*", "", True),
]
IDS = [f"{p}~{a or 'null'}" for p, a, _ in TABLE]
COPY = "copy@archive.example"


def toml_list(pattern: str) -> str:
    return f'["{pattern}"]'


def wiretap_archives(tmp: Path, key: str, pattern: str, sender: str, rcpt: str) -> bool:
    root = tmp / "archive"
    cfg = (
        f'[chain]\nplugins = ["wiretap"]\n[plugins.wiretap]\nroot = "{root}"\n'
        f'[[plugins.wiretap.archive]]\npath = "all"\n{key} = {toml_list(pattern)}\n'
    )
    run_message(session(cfg), sender, [rcpt], b"Subject: x\r\n\r\nbody\r\n")
    return (root / "all" / "new").exists() and any((root / "all" / "new").iterdir())


def wiretap_taps(pattern: str, sender: str, rcpt: str) -> bool:
    cfg = (
        '[chain]\nplugins = ["wiretap"]\n[plugins.wiretap]\nroot = "/nonexistent"\n'
        f'[[plugins.wiretap.tap]]\nusers = {toml_list(pattern)}\ncopy_to = "{COPY}"\n'
    )
    out = run_message(session(cfg), sender, [rcpt], b"Subject: x\r\n\r\nbody\r\n")
    return RecipientAddition(COPY) in out.changes


def bcc_copies(key: str, pattern: str, sender: str, rcpt: str) -> bool:
    cfg = (
        '[chain]\nplugins = ["bcc"]\n'
        f'[[plugins.bcc.rules]]\ncopy_to = ["{COPY}"]\n{key} = {toml_list(pattern)}\n'
    )
    out = run_message(session(cfg), sender, [rcpt], b"Subject: x\r\n\r\nbody\r\n")
    return RecipientAddition(COPY) in out.changes


def when_applies(key: str, pattern: str, sender: str, rcpt: str) -> bool:
    cfg = (
        '[chain]\nplugins = ["stamp"]\n[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\n'
        f"[plugins.stamp.when]\n{key} = {toml_list(pattern)}\n"
    )
    out = run_message(session(cfg), sender, [rcpt], b"Subject: x\r\n\r\nbody\r\n")
    return any(getattr(c, "name", "") == "X-Test" for c in out.changes)


@pytest.mark.parametrize("pattern, address, expected", TABLE, ids=IDS)
def test_every_user_reads_a_sender_pattern_the_same(tmp_path, pattern, address, expected):
    rcpt = "someone@elsewhere.example"
    got = {
        "api": AddressPattern(pattern).matches(address),
        "api-matches_any": matches_any(address, [pattern]),
        "wiretap archive senders": wiretap_archives(tmp_path, "senders", pattern, address, rcpt),
        "bcc senders": bcc_copies("senders", pattern, address, rcpt),
        "when senders": when_applies("senders", pattern, address, rcpt),
    }
    if address:  # the null sender is not a party a tap watches
        got["wiretap tap users"] = wiretap_taps(pattern, address, rcpt)
    assert got == dict.fromkeys(got, expected)


@pytest.mark.parametrize(
    "pattern, address, expected",
    [row for row in TABLE if row[1]],
    ids=[i for i, r in zip(IDS, TABLE, strict=True) if r[1]],
)
def test_every_user_reads_a_recipient_pattern_the_same(tmp_path, pattern, address, expected):
    sender = "someone@elsewhere.example"
    got = {
        "wiretap archive recipients": wiretap_archives(
            tmp_path, "recipients", pattern, sender, address
        ),
        "wiretap tap users": wiretap_taps(pattern, sender, address),
        "bcc recipients": bcc_copies("recipients", pattern, sender, address),
        "when recipients": when_applies("recipients", pattern, sender, address),
    }
    assert got == dict.fromkeys(got, expected)


def test_when_domain_lists_are_the_domain_pattern() -> None:
    for domain, sender, expected in [
        ("example.org", "a@example.org", True),
        ("example.org", "a@lists.example.org", True),
        ("example.org", "a@badexample.org", False),
    ]:
        assert when_applies("sender_domains", domain, sender, "b@x.example") is expected
        assert when_applies("recipient_domains", domain, "b@x.example", sender) is expected


BAD = ["", "example.com", "a b@example.com", "@", "@a@b"]


@pytest.mark.parametrize("pattern", BAD)
def test_a_malformed_pattern_is_a_config_error_naming_the_key(pattern: str) -> None:
    configs = {
        "plugins.wiretap.archive[0].senders[0]": (
            '[chain]\nplugins = ["wiretap"]\n[plugins.wiretap]\nroot = "/x"\n'
            f'[[plugins.wiretap.archive]]\npath = "all"\nsenders = {toml_list(pattern)}\n'
        ),
        "plugins.wiretap.tap[0].users[0]": (
            '[chain]\nplugins = ["wiretap"]\n[plugins.wiretap]\nroot = "/x"\n'
            f'[[plugins.wiretap.tap]]\nusers = {toml_list(pattern)}\ncopy_to = "{COPY}"\n'
        ),
        "plugins.bcc.rules[0].recipients[0]": (
            '[chain]\nplugins = ["bcc"]\n'
            f'[[plugins.bcc.rules]]\ncopy_to = ["{COPY}"]\nrecipients = {toml_list(pattern)}\n'
        ),
        "plugins.stamp.when": (
            '[chain]\nplugins = ["stamp"]\n[plugins.stamp]\nuse = "tests.testplugins:AddHeader"\n'
            f"[plugins.stamp.when]\nsenders = {toml_list(pattern)}\n"
        ),
    }
    for key, text in configs.items():
        with pytest.raises(ConfigError) as failed:
            build_runtime(load_text(text))
        message = str(failed.value)
        assert key in message and "pattern" in message, message
