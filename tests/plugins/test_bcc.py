"""The bcc plugin: added recipients by rules, never duplicated."""

from __future__ import annotations

from miltrd.api import RecipientAddition

from .helpers import run_message, session

CONFIG = """\
[internal]
networks = ["10.0.0.0/8"]
domains = ["example.com"]
[chain]
plugins = ["bcc"]
[[plugins.bcc.rules]]
direction = ["outgoing"]
copy_to = ["sent@example.com"]
[[plugins.bcc.rules]]
recipients = ["*@example.com"]
copy_to = ["copy-{user}@archive.example.com"]
[[plugins.bcc.rules]]
senders = ["ceo@example.com"]
copy_to = ["audit@example.com", "sent@example.com"]
"""


def added(out) -> list[str]:
    return [m.address for m in out.changes if isinstance(m, RecipientAddition)]


def test_outgoing_rule_and_sender_rule_without_duplicates() -> None:
    out = run_message(session(CONFIG, ip="10.0.0.5"), "ceo@example.com", ["partner@other.example"])
    assert added(out) == ["sent@example.com", "audit@example.com"]


def test_recipient_template_per_matching_recipient() -> None:
    out = run_message(
        session(CONFIG, ip="203.0.113.1"),
        "someone@other.example",
        ["Alice@EXAMPLE.com", "bob@example.com", "x@elsewhere.example"],
    )
    assert added(out) == ["copy-Alice@archive.example.com", "copy-bob@archive.example.com"]


def test_existing_recipient_is_not_added_again() -> None:
    out = run_message(
        session(CONFIG, ip="10.0.0.5"), "a@example.com", ["SENT@example.com", "x@o.example"]
    )
    assert "sent@example.com" not in [a.lower() for a in added(out)]


def test_template_values_from_the_peer_are_sanitised() -> None:
    cfg = (
        CONFIG
        + '[[plugins.bcc.rules]]\nsenders = ["*"]\ncopy_to = ["log-{sender_user}@example.com"]\n'
    )
    out = run_message(session(cfg, ip="203.0.113.1"), 'we"ird user@x.example', ["a@y.example"])
    assert added(out) == ["log-we_ird_user@example.com"]
