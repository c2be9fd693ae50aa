"""What ``check`` and ``run`` warn about in a config that loads.

Placeholders: names under the ``.example`` top-level domain, which RFC
2606 reserves for documentation and which the shipped sample config uses
for what each site must fill in (``your-domain.example``). No site's mail
is under it. (example.com, .net and .org are documentation names too, but
the README and the test suite use them as stand-ins for a site's real
domains, so they are not treated as placeholders.) ``[internal] domains`` says what is ours,
and every plugin's judgement (internal or not, the direction of a
message) rests on it: while it names a placeholder, every plugin runs in
observe mode (logs what it would do, changes nothing), so a fresh install
never refuses mail the site has not told it to refuse. A placeholder in a
plugin's own options (a bcc copy_to, a wiretap address) is warned about.

Unused plugin tables: a ``[plugins.NAME]`` table for a plugin that
``chain.plugins`` does not list is not an error (sites keep the settings
of a plugin they have switched off, as Postfix keeps parameters nothing
uses), but it is not checked and not used, so it is said, with the chain
name it most likely meant when it looks like a misspelling of one.

Networks with host bits set (``192.168.1.1/24``): accepted as the network
they lie in, as Postfix's mynetworks does, but most likely a typo for an
address or for another prefix length, so it is said.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Advice", "advise", "is_placeholder_domain"]

# RFC 2606 section 2: the top-level domain for documentation.
_DOC_DOMAINS = ("example",)
# Keys not searched: not names at all, or (``when``) names that only
# narrow where a plugin applies, which a placeholder cannot make harmful.
_NOT_NAMES = ("use", "mode", "on_error", "when")


@dataclass(frozen=True)
class Advice:
    """The warnings for one config, and the plugins that must observe."""

    warnings: tuple[tuple[str, str], ...]  # (key path, message)
    observe: dict[str, str]  # plugin name -> why it runs in observe mode


def is_placeholder_domain(name: str) -> bool:
    """True for ``example`` and any name under it (RFC 2606 section 2)."""
    name = name.strip().lower().rstrip(".")
    return any(name == d or name.endswith("." + d) for d in _DOC_DOMAINS)


def _domain_in(text: str) -> str | None:
    """The domain a config string names: an address's domain, a pattern's
    (``*@lists.example.org``), or a bare domain; None for other text."""
    candidate = text.rpartition("@")[2] if "@" in text else text
    candidate = candidate.strip().lstrip("*.").rstrip(".")
    if "." not in candidate or any(c in candidate for c in " /:{}[]=,;"):
        return None
    return candidate


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _NOT_NAMES:
                yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def _networks(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    internal = data.get("internal")
    if isinstance(internal, dict):
        yield from _strings(internal.get("networks", []), "internal.networks")
    plugins = data.get("plugins")
    if isinstance(plugins, dict):
        for name, table in plugins.items():
            if isinstance(table, dict):
                for path, text in _strings(table, f"plugins.{name}"):
                    if "/" in text and path.rstrip("]0123456789[").endswith(
                        ("networks", "forwarders")
                    ):
                        yield path, text


def _unused(name: str, chain: list[str]) -> str:
    close = difflib.get_close_matches(name, chain, n=1)
    if close:
        return (
            f'not in chain.plugins, so not used or checked (a misspelling of "{close[0]}"? '
            f'else add "{name}" to chain.plugins to enable it)'
        )
    return f'not in chain.plugins, so not used or checked (add "{name}" there to enable it)'


def advise(data: dict[str, Any], chain: list[str]) -> Advice:
    """Warnings for the parsed TOML ``data`` of a config that validated;
    ``chain`` is chain.plugins in order."""
    warnings: list[tuple[str, str]] = []
    observe: dict[str, str] = {}
    internal = data.get("internal") if isinstance(data.get("internal"), dict) else {}
    assert isinstance(internal, dict)
    site_placeholders = [
        (path, text)
        for path, text in _strings(internal.get("domains", []), "internal.domains")
        if is_placeholder_domain(text)
    ]
    for path, text in site_placeholders:
        warnings.append(
            (
                path,
                f'"{text}" is a placeholder (.example is for documentation, RFC 2606), not one '
                "of your domains: every plugin runs in observe mode until you list your own",
            )
        )
        for name in chain:
            observe.setdefault(name, f"internal.domains holds the placeholder {text!r}")
    plugins = data.get("plugins") if isinstance(data.get("plugins"), dict) else {}
    assert isinstance(plugins, dict)
    for name in chain:
        table = plugins.get(name, {})
        if not isinstance(table, dict):
            continue
        for path, text in _strings(table, f"plugins.{name}"):
            domain = _domain_in(text)
            if domain is None or not is_placeholder_domain(domain):
                continue
            warnings.append(
                (path, f'"{text}" is a placeholder (.example is for documentation, RFC 2606)')
            )
    for name in plugins:
        if name not in chain:
            warnings.append((f"plugins.{name}", _unused(name, chain)))
    for path, text in _networks(data):
        try:
            ipaddress.ip_network(text, strict=True)
            continue
        except ValueError:
            pass
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue  # not a network at all: an error reported elsewhere
        warnings.append(
            (
                path,
                f'"{text}" has host bits set: it means {loose}; write that, or the '
                f"address alone ({text.partition('/')[0]}) if one host was meant",
            )
        )
    return Advice(tuple(warnings), observe)
