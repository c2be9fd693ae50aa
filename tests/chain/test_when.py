"""Per-plugin `when` conditions: each kind, through the chain."""

from __future__ import annotations

import pytest

from miltrd.api import HeaderAddition, VerdictKind
from miltrd.config import ConfigError, load_text

from ..plugins.helpers import run_message, session

BASE = """\
[internal]
networks = ["10.0.0.0/8"]
domains = ["example.com"]
[chain]
plugins = ["tag", "other"]
[plugins.tag]
use = "tests.testplugins:AddHeader"
name = "X-Tag"
[plugins.tag.when]
{when}
[plugins.other]
use = "tests.testplugins:AddHeader"
name = "X-Other"
"""


def tagged(
    when: str,
    *,
    ip: str = "203.0.113.1",
    sender: str = "a@example.org",
    rcpts: tuple[str, ...] = ("b@example.com",),
    macros: dict[str, str] | None = None,
) -> bool:
    out = run_message(session(BASE.format(when=when), ip=ip, macros=macros), sender, list(rcpts))
    names = [m.name for m in out.changes if isinstance(m, HeaderAddition)]
    assert "X-Other" in names  # the unconditional plugin always runs
    return "X-Tag" in names


@pytest.mark.parametrize(
    "when, kwargs, expected",
    [
        ('direction = ["incoming"]', {}, True),
        ('direction = ["incoming"]', {"ip": "10.1.1.1", "sender": "a@example.com"}, False),
        ('direction = ["outgoing"]', {"ip": "10.1.1.1", "rcpts": ("x@other.example",)}, True),
        ('direction = ["outgoing"]', {"ip": "10.1.1.1", "rcpts": ("x@example.com",)}, False),
        ('direction = ["internal"]', {"ip": "10.1.1.1", "rcpts": ("x@example.com",)}, True),
        ("authenticated = true", {"macros": {"{auth_authen}": "alice"}}, True),
        ("authenticated = true", {}, False),
        ("authenticated = false", {}, True),
        ('client_networks = ["203.0.113.0/24"]', {}, True),
        ('client_networks = ["198.51.100.0/24"]', {}, False),
        ('sender_domains = ["example.org"]', {}, True),
        ('sender_domains = ["example.org"]', {"sender": "a@sub.example.org"}, True),
        ('sender_domains = ["example.net"]', {}, False),
        ('senders = ["a@*"]', {}, True),
        ('senders = ["z*@*"]', {}, False),
        ('recipient_domains = ["example.com"]', {}, True),
        ('recipient_domains = ["example.net"]', {}, False),
        ('recipients = ["b@*"]', {"rcpts": ("x@example.com", "b@example.com")}, True),
        ('recipients = ["sales@*"]', {}, False),
        (
            'macros = { "{daemon_name}" = "submission" }',
            {"macros": {"{daemon_name}": "submission"}},
            True,
        ),
        ('macros = { "{daemon_name}" = "submission" }', {"macros": {"{daemon_name}": "mx"}}, False),
    ],
)
def test_condition_kinds(when: str, kwargs: dict, expected: bool) -> None:
    assert tagged(when, **kwargs) is expected


def test_recipient_condition_at_rcpt_applies_per_recipient() -> None:
    cfg = """\
[chain]
plugins = ["rcpt"]
[plugins.rcpt]
use = "tests.testplugins:RejectRecipient"
recipients = ["a@example.com", "a@example.net"]
[plugins.rcpt.when]
recipient_domains = ["example.com"]
"""
    out = run_message(session(cfg), "s@x.example", ["a@example.com", "a@example.net"])
    assert [v.kind for v in out.rcpts] == [VerdictKind.REJECT, VerdictKind.CONTINUE]


def test_non_matching_plugin_does_not_block_the_early_accept() -> None:
    cfg = """\
[chain]
plugins = ["acc", "tag"]
[plugins.acc]
use = "tests.testplugins:AcceptAtMail"
[plugins.tag]
use = "tests.testplugins:AddHeader"
[plugins.tag.when]
client_networks = ["198.51.100.0/24"]
"""
    out = run_message(session(cfg), "s@x.example", ["a@example.com"])
    assert out.mail.kind is VerdictKind.ACCEPT


def test_bad_when_is_a_located_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_text(
            '[chain]\nplugins = ["bcc"]\n[plugins.bcc.when]\ndirection = ["sideways"]\n'
            'client_networks = ["nope"]\n',
            "m.toml",
        )
    text = str(info.value)
    assert "m.toml:4: plugins.bcc.when.direction[0]: expected one of 'incoming'" in text
