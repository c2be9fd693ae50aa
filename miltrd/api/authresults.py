"""Authentication results that plugins publish, and the header they become.

A plugin that checks a message's authenticity (spf, dkim, dmarc, ...)
publishes each result with ``msg.publish_auth_result``; later plugins of
the chain read them from ``msg.auth_results`` (dmarc uses the spf and
dkim results this way). At end of message the chain writes every
published result into one ``Authentication-Results`` header (RFC 8601),
at the top of the header block, after removing incoming
``Authentication-Results`` headers that claim the site's authserv-id
(RFC 8601 section 5).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "AuthResult",
    "format_authentication_results",
    "authserv_id_of",
    "MAX_HEADER_LINE",
]

# RFC 5322 section 2.1.1: a line is at most 998 octets without CRLF.
MAX_HEADER_LINE = 998
_HEADER_NAME = "Authentication-Results"

# RFC 8601 section 2.2: method, result and ptype are keywords; a property
# is a keyword too (RFC 8601 section 2.3).
_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")
# RFC 2045 token: printable ASCII except SPACE, CTLs and tspecials.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")
# [local-part "@"] domain-name with a dot-atom local part (RFC 8601 pvalue).
_MAILBOX = re.compile(
    r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)?@"
    r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\Z"
)
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def _printable(text: str) -> str:
    """Only printable ASCII goes into a header miltrd writes (RFC 5322
    without RFC 6532): anything else, peer data included, becomes '?'."""
    return _NOT_PRINTABLE.sub("?", text)


def _pvalue(value: str) -> str:
    """A property value as RFC 8601 section 2.2 ``pvalue``: bare when it is a
    token or a mailbox, otherwise a quoted-string."""
    value = _printable(value)
    if value and (_TOKEN.match(value) or _MAILBOX.match(value)):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One result (RFC 8601 section 2.2 ``resinfo``).

    ``method`` is a registered method name (``spf``, ``dkim``, ``dmarc``,
    RFC 8601 section 2.7), ``result`` its result keyword (``pass``,
    ``fail``, ``none``, ...), ``properties`` ``(ptype.property, value)``
    pairs in order, e.g. ``(("header.d", "example.com"),)``; ``reason`` a
    free text, and ``plugin`` the plugin that published it (filled in by
    the API). Raises ValueError for a method, result or property name that
    is not an RFC 8601 keyword.
    """

    method: str
    result: str
    properties: tuple[tuple[str, str], ...] = ()
    reason: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        for what, word in (("method", self.method), ("result", self.result)):
            if not _KEYWORD.match(word):
                raise ValueError(f"{what} {word!r} is not an RFC 8601 keyword")
        for name, _value in self.properties:
            ptype, dot, prop = name.partition(".")
            if not (dot and _KEYWORD.match(ptype) and _KEYWORD.match(prop)):
                raise ValueError(f"property {name!r} is not ptype.property (RFC 8601)")

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of property ``name`` (``"header.d"``), or ``default``."""
        lname = name.lower()
        for key, value in self.properties:
            if key.lower() == lname:
                return value
        return default

    def render(self) -> str:
        """``method=result [reason="..."] ptype.prop=value ...``."""
        parts = [f"{self.method.lower()}={self.result.lower()}"]
        if self.reason:
            parts.append("reason=" + _pvalue(self.reason))
        parts.extend(f"{name.lower()}={_pvalue(value)}" for name, value in self.properties)
        return " ".join(parts)


def make_result(
    method: str,
    result: str,
    properties: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    reason: str = "",
    plugin: str = "",
) -> AuthResult:
    pairs = properties.items() if isinstance(properties, Mapping) else properties
    return AuthResult(method, result, tuple((str(k), str(v)) for k, v in pairs), reason, plugin)


def format_authentication_results(authserv_id: str, results: Iterable[AuthResult]) -> list[str]:
    """Header values (without the field name) for these results.

    Normally one value, ``authserv-id; method=result ...; method=result ...``.
    A value whose line would pass 998 octets (RFC 5322 section 2.1.1) is
    split into several headers with the same authserv-id, which RFC 8601
    section 2.2 allows. Returns [] when there are no results.
    """
    limit = MAX_HEADER_LINE - len(_HEADER_NAME) - 2
    values: list[str] = []
    current = ""
    for rendered in (r.render() for r in results):
        if current and len(current) + 2 + len(rendered) > limit:
            values.append(current)
            current = ""
        current = f"{current}; {rendered}" if current else f"{authserv_id}; {rendered}"
    if current:
        values.append(current)
    return values


_COMMENT_OR_SPACE = re.compile(r"\s+|\((?:[^()\\]|\\.)*\)")


def authserv_id_of(value: str) -> str:
    """The authserv-id an Authentication-Results value claims, lower-cased,
    without comments (RFC 8601 section 2.2); "" when there is none."""
    text = value
    while True:
        m = _COMMENT_OR_SPACE.match(text)
        if not m or not m.group(0):
            break
        text = text[m.end() :]
    if text.startswith('"'):
        end = re.match(r'"((?:[^"\\]|\\.)*)"', text)
        return end.group(1).lower() if end else ""
    m = re.match(r"[^\s;()]+", text)
    return m.group(0).lower().rstrip(".") if m else ""
