"""One address-pattern language for every rule that matches addresses.

wiretap's archive and tap rules, bcc's rules and a plugin entry's ``when``
table all use it, and a third-party plugin gets it from ``miltrd.api``.
Addresses and patterns are compared without regard to case (RFC 5321 lets
the local part be case-sensitive, but no site makes two mailboxes of one
name); an address is taken bare (``<User@Example.COM>`` is
``user@example.com``) and a trailing dot after its domain is ignored.

=========================  ================================================
pattern                    matches
=========================  ================================================
``user@example.com``       that address
``@example.com``           any address at example.com or at a subdomain
                           of it (``a@example.com``, ``b@mx.example.com``)
``*@example.com``          shell-style wildcards over the whole address:
``sales-?@*.example.org``  ``*`` any run of characters, ``?`` one,
                           ``[abc]`` one of those
``<>``                     the null sender (an empty address)
=========================  ================================================

Anything else (an empty pattern, white space, a bare ``example.com``) is
refused with ValueError when the configuration is loaded, never silently
matched against nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .context import bare_address

__all__ = ["AddressPattern", "matches_any", "domain_pattern", "option_patterns"]

_WILDCARD = re.compile(r"[*?\[]")


def _normal(address: str) -> str:
    return bare_address(address).lower().rstrip(".")


@dataclass(frozen=True)
class AddressPattern:
    """One compiled pattern; ValueError (naming the pattern) if malformed."""

    text: str
    _kind: str = field(default="", repr=False, compare=False)
    _value: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        text = self.text.strip().lower()
        if not text:
            raise ValueError("an empty address pattern")
        if any(c.isspace() for c in text):
            raise ValueError(f"address pattern {self.text!r} contains white space")
        if text == "<>":
            kind, value = "null", ""
        elif _WILDCARD.search(text):
            kind, value = "glob", text
        elif text.startswith("@"):
            if len(text) == 1 or "@" in text[1:]:
                raise ValueError(f"address pattern {self.text!r} is not @domain")
            kind, value = "domain", text[1:].rstrip(".")
        elif "@" in text:
            kind, value = "address", text.rstrip(".")
        else:
            raise ValueError(
                f"address pattern {self.text!r} has no @: write @{text} for the domain, "
                f"or *@{text} for that domain only"
            )
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_value", value)

    def matches(self, address: str) -> bool:
        """Does ``address`` (with or without <>) match this pattern?"""
        addr = _normal(address)
        kind, value = self._kind, self._value
        if kind == "null":
            return addr == ""
        if kind == "address":
            return addr == value
        if kind == "domain":
            if "@" not in addr:
                return False
            domain = addr.rpartition("@")[2]
            return domain == value or domain.endswith("." + value)
        return fnmatch.fnmatchcase(addr, value)


def domain_pattern(domain: str) -> AddressPattern:
    """The pattern for every address at ``domain`` or its subdomains."""
    return AddressPattern("@" + domain.strip().lstrip("@"))


def matches_any(address: str, patterns: Iterable[AddressPattern | str]) -> bool:
    """Does ``address`` match any of ``patterns`` (compiled or text)?"""
    for pattern in patterns:
        compiled = pattern if isinstance(pattern, AddressPattern) else AddressPattern(pattern)
        if compiled.matches(address):
            return True
    return False


def option_patterns(patterns: Iterable[str], key: str) -> tuple[AddressPattern, ...]:
    """Compile a plugin option's patterns; OptionError naming ``key[i]``
    for the first malformed one (for a plugin's ``__init__``)."""
    from .plugin import OptionError

    out = []
    for i, text in enumerate(patterns):
        try:
            out.append(AddressPattern(text))
        except ValueError as exc:
            raise OptionError(f"{key}[{i}]", str(exc)) from None
    return tuple(out)
