"""The zombie plugin: internal clients sending as foreign domains."""

from __future__ import annotations

import pytest

from miltrd.api import Quarantining, VerdictKind
from miltrd.config import ConfigError

from .helpers import run_message, session

BASE = """\
[internal]
networks = ["10.0.0.0/8"]
domains = ["example.com"]
authenticated = {auth}
[chain]
plugins = ["zombie"]
[plugins.zombie]
{extra}
"""


def make(ip: str, extra: str = "", auth: str = "true", macros: dict[str, str] | None = None):
    return session(BASE.format(extra=extra, auth=auth), ip=ip, macros=macros)


def test_internal_client_with_foreign_sender_is_rejected(caplog) -> None:
    with caplog.at_level("INFO", logger="miltrd"):
        out = run_message(make("10.1.2.3"), "boss@evil.example", ["x@example.org"])
    assert out.mail.kind is VerdictKind.REJECT
    reply = out.mail.reply
    assert reply is not None and (reply.code, reply.xcode) == (550, "5.7.1")
    assert reply.lines == (
        "Client 10.1.2.3 may not send as <boss@evil.example>: not one of our domains",
    )
    assert "ZOMBIE client=" in caplog.text and "10.1.2.3" in caplog.text


@pytest.mark.parametrize("sender", ["user@example.com", "User@EXAMPLE.COM", ""])
def test_own_domain_and_null_sender_pass(sender: str) -> None:
    assert (
        run_message(make("10.1.2.3"), sender, ["x@example.org"]).mail.kind is VerdictKind.CONTINUE
    )


def test_external_client_is_not_judged() -> None:
    out = run_message(make("203.0.113.5"), "boss@evil.example", ["x@example.com"])
    assert out.mail.kind is VerdictKind.CONTINUE


def test_authenticated_client_counts_as_internal() -> None:
    macros = {"{auth_authen}": "alice"}
    out = run_message(make("203.0.113.5", macros=macros), "a@evil.example", ["x@example.org"])
    assert out.mail.kind is VerdictKind.REJECT
    out = run_message(
        make("203.0.113.5", auth="false", macros=macros), "a@evil.example", ["x@example.org"]
    )
    assert out.mail.kind is VerdictKind.CONTINUE


def test_subdomains_option() -> None:
    out = run_message(make("10.0.0.1"), "a@mail.example.com", ["x@example.org"])
    assert out.mail.kind is VerdictKind.REJECT
    out = run_message(make("10.0.0.1", "subdomains = true"), "a@mail.example.com", ["x@y.org"])
    assert out.mail.kind is VerdictKind.CONTINUE


def test_null_sender_can_be_refused() -> None:
    out = run_message(make("10.0.0.1", "allow_null_sender = false"), "", ["x@example.org"])
    assert out.mail.kind is VerdictKind.REJECT


@pytest.mark.parametrize(
    "action, kind", [("tempfail", VerdictKind.TEMPFAIL), ("discard", VerdictKind.DISCARD)]
)
def test_actions(action: str, kind: VerdictKind) -> None:
    out = run_message(make("10.0.0.1", f'action = "{action}"'), "a@evil.example", ["x@example.org"])
    assert out.mail.kind is kind


def test_quarantine_action_holds_the_message() -> None:
    out = run_message(
        make("10.0.0.1", 'action = "quarantine"'), "a@evil.example", ["x@example.org"]
    )
    assert out.mail.kind is VerdictKind.CONTINUE
    assert out.changes == [Quarantining("zombie: 10.0.0.1 sent as <a@evil.example>")]


def test_allowed_senders() -> None:
    extra = 'allow_senders = ["alerts@partner.example"]'
    out = run_message(make("10.0.0.1", extra), "Alerts@partner.example", ["x@example.org"])
    assert out.mail.kind is VerdictKind.CONTINUE


def test_needs_internal_domains() -> None:
    with pytest.raises(
        ConfigError, match=r"internal\.domains: lists no domain, but plugin zombie needs"
    ):
        session('[chain]\nplugins = ["zombie"]\n')


LOCAL = """\
[internal]
networks = ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]
domains = ["example.com"]
[chain]
plugins = ["zombie"]
[plugins.zombie]
subdomains = false
{extra}
"""


def local_session(ip: str, extra: str = ""):
    # The helpers' MTA calls itself mx.example.com (the j macro).
    return session(LOCAL.format(extra=extra), ip=ip)


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1"])
def test_this_hosts_own_submissions_may_use_its_names(ip: str, monkeypatch, tmp_path) -> None:
    import socket

    from miltrd.plugins import zombie

    mailname = tmp_path / "mailname"
    mailname.write_text("mail.site.example.com\n")
    monkeypatch.setattr(zombie, "MAILNAME", str(mailname))
    # cron's root@ the MTA's host name, this machine's name, /etc/mailname's.
    for sender in (
        "root@mx.example.com",
        f"root@{socket.gethostname()}",
        "root@mail.site.example.com",
        "root@localhost",
    ):
        out = run_message(local_session(ip), sender, ["admin@example.com"])
        assert out.mail.kind is VerdictKind.CONTINUE, sender
    # Other names are still judged, also from this host.
    out = run_message(local_session(ip), "root@evil.example", ["admin@example.com"])
    assert out.mail.kind is VerdictKind.REJECT


def test_the_hosts_names_are_not_ours_from_elsewhere_or_when_switched_off() -> None:
    out = run_message(local_session("10.1.2.3"), "root@mx.example.com", ["admin@example.com"])
    assert out.mail.kind is VerdictKind.REJECT
    off = local_session("127.0.0.1", "local_host_names = false")
    out = run_message(off, "root@mx.example.com", ["admin@example.com"])
    assert out.mail.kind is VerdictKind.REJECT
