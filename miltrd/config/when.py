"""The ``when`` table of a plugin entry: where the plugin applies.

    [plugins.spf.when]
    direction = ["incoming"]                  # incoming | outgoing | internal
    authenticated = false                     # SMTP AUTH or not
    client_networks = ["0.0.0.0/0", "::/0"]   # the client's address
    sender_domains = ["example.org"]          # MAIL FROM domain (subdomains too)
    senders = ["*@lists.example.org"]         # MAIL FROM address patterns
    recipient_domains = ["example.com"]       # any recipient's domain
    recipients = ["sales@*"]                  # any recipient's address patterns
    macros = { "{daemon_name}" = "submission" }   # MTA macro values (patterns)

Every key given must match; a list matches if any entry does. ``senders``
and ``recipients`` are address patterns, the one syntax every rule that
matches addresses uses (``miltrd.api.AddressPattern``: ``user@example.com``,
``@example.com`` for a domain and its subdomains, ``*`` ``?`` ``[...]``
wildcards, ``<>`` for the null sender); a ``*_domains`` entry ``d`` is the
pattern ``@d``. Macro values are shell-style patterns. All compare without
case.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from ..api import AddressPattern, matches_any

__all__ = ["When", "Facts", "check_when", "NO_RECIPIENT_MATCHES"]

NO_RECIPIENT_MATCHES = "no recipient matches"

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class When:
    direction: list[Literal["incoming", "outgoing", "internal"]] | None = None
    authenticated: bool | None = None
    client_networks: list[str] | None = None
    sender_domains: list[str] | None = None
    senders: list[str] | None = None
    recipient_domains: list[str] | None = None
    recipients: list[str] | None = None
    macros: dict[str, str] | None = None
    _networks: tuple[IPNet, ...] = field(default=(), repr=False, compare=False)
    _patterns: dict[str, tuple[AddressPattern, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        nets = []
        for text in self.client_networks or ():
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"client_networks: not a network: {text!r}") from None
        object.__setattr__(self, "_networks", tuple(nets))
        patterns: dict[str, tuple[AddressPattern, ...]] = {}
        for key, domains in (
            ("sender_domains", self.sender_domains),
            ("recipient_domains", self.recipient_domains),
        ):
            patterns[key] = tuple(
                _compiled(key, "@" + d.strip().lstrip("@"), d) for d in domains or ()
            )
        for key, texts in (("senders", self.senders), ("recipients", self.recipients)):
            patterns[key] = tuple(_compiled(key, text, text) for text in texts or ())
        object.__setattr__(self, "_patterns", patterns)

    def describe(self) -> str:
        parts = []
        for name in (
            "direction",
            "authenticated",
            "client_networks",
            "sender_domains",
            "senders",
            "recipient_domains",
            "recipients",
            "macros",
        ):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}")
        return ", ".join(parts) or "always"


@dataclass
class Facts:
    """What is known about the message so far (None: not yet)."""

    client_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    authenticated: bool | None = None
    direction: str | None = None
    sender: str | None = None
    recipients: list[str] | None = None
    macros: dict[str, str] = field(default_factory=dict)


def _compiled(key: str, text: str, given: str) -> AddressPattern:
    try:
        return AddressPattern(text)
    except ValueError as exc:
        raise ValueError(f"{key}: {given!r}: {exc}") from None


def _pattern(value: str, patterns: list[str]) -> bool:
    value = value.lower()
    return any(fnmatch.fnmatchcase(value, p.lower()) for p in patterns)


def check_when(when: When, facts: Facts) -> tuple[bool | None, str]:
    """(True, "") if every condition holds; (False, why) if one fails;
    (None, "") while a condition waits for data not known yet."""
    pending = False
    if when.direction is not None:
        if facts.direction is None:
            pending = True
        elif facts.direction not in when.direction:
            return False, f"direction is {facts.direction}, not {'/'.join(when.direction)}"
    if when.authenticated is not None:
        if facts.authenticated is None:
            pending = True
        elif facts.authenticated != when.authenticated:
            state = "authenticated" if facts.authenticated else "not authenticated"
            return False, f"client is {state}"
    if when.client_networks is not None:
        if facts.client_ip is None:
            return False, "client has no IP address"
        if not any(facts.client_ip in net for net in when._networks):
            return False, f"client {facts.client_ip} not in {', '.join(when.client_networks)}"
    if when.sender_domains is not None or when.senders is not None:
        if facts.sender is None:
            pending = True
        else:
            sender = facts.sender
            domain = sender.rpartition("@")[2] if "@" in sender else ""
            patterns = when._patterns
            if when.sender_domains is not None and not matches_any(
                sender, patterns["sender_domains"]
            ):
                return False, f"sender domain {domain or '(none)'} not listed"
            if when.senders is not None and not matches_any(sender, patterns["senders"]):
                return False, f"sender <{sender}> does not match"
    if when.recipient_domains is not None or when.recipients is not None:
        if not facts.recipients:
            pending = True
        else:
            ok = [
                r
                for r in facts.recipients
                if (
                    when.recipient_domains is None
                    or matches_any(r, when._patterns["recipient_domains"])
                )
                and (when.recipients is None or matches_any(r, when._patterns["recipients"]))
            ]
            if not ok:
                return False, NO_RECIPIENT_MATCHES
    for name, pattern in (when.macros or {}).items():
        value = facts.macros.get(name, facts.macros.get(name.strip("{}")))
        if value is None:
            pending = True
        elif not _pattern(value, [pattern]):
            return False, f"macro {name} is {value!r}"
    return (None, "") if pending else (True, "")
