"""Byte-exact MIME structure, for changing one part and keeping the rest.

Python's email package parses well but writes a message back with its own
folding and line breaks. The defang plugin must keep every part it does
not remove byte for byte, so this module finds where each part starts and
ends in the raw body (RFC 2046 boundaries), and uses the email package
only to read each part's headers and decode its content.

Nothing here raises on malformed input: problems are recorded as
``defects`` on the tree and the walk goes on with what it can read.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import email.utils
import quopri
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser

__all__ = ["Part", "Limits", "parse_tree", "decode_payload", "header_block_end"]

_PARSER = BytesHeaderParser(policy=email.policy.default)


@dataclass(frozen=True)
class Limits:
    max_depth: int = 10
    max_parts: int = 500


@dataclass
class Part:
    """A MIME entity: [start, end) of the whole entity in the body bytes,
    its headers (parsed), and where its content begins."""

    start: int
    end: int
    content_start: int
    headers: EmailMessage
    depth: int
    children: list[Part] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        try:
            return self.headers.get_content_type()
        except Exception:
            return "application/octet-stream"

    def walk(self) -> list[Part]:
        return [self, *(p for child in self.children for p in child.walk())]

    def leaves(self) -> list[Part]:
        if not self.children:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]


def header_block_end(data: bytes, start: int, end: int) -> int:
    """Offset of the first byte after the blank line ending the headers
    (``start`` when the entity begins with a blank line: no headers)."""
    if data.startswith(b"\r\n", start) or data.startswith(b"\n", start):
        return start + (2 if data.startswith(b"\r\n", start) else 1)
    m = re.compile(rb"\r?\n\r?\n").search(data, start, end)
    return m.end() if m else end


def _headers(raw: bytes) -> tuple[EmailMessage, list[str]]:
    try:
        parsed = _PARSER.parsebytes(raw)
        return parsed, [type(d).__name__ for d in parsed.defects]
    except Exception as exc:  # the parser is lenient, but never trust it fully
        return EmailMessage(policy=email.policy.default), [f"header parse error: {exc!r}"]


def _boundary(headers: EmailMessage) -> str | None:
    try:
        value = headers.get_param("boundary")
    except Exception:
        return None
    if isinstance(value, tuple):  # RFC 2231 encoded
        value = email.utils.collapse_rfc2231_value(value)
    return str(value) if value else None


class _Counter:
    def __init__(self) -> None:
        self.parts = 0


def parse_tree(headers: EmailMessage, body: bytes, limits: Limits) -> tuple[Part, list[str]]:
    """The tree of the message whose headers are given and whose body is
    ``body``; offsets are into ``body``. Returns (root, limit problems)."""
    root = Part(0, len(body), 0, headers, 0)
    problems: list[str] = []
    _expand(root, body, limits, _Counter(), problems)
    return root, problems


def _expand(
    part: Part, data: bytes, limits: Limits, counter: _Counter, problems: list[str]
) -> None:
    counter.parts += 1
    if counter.parts > limits.max_parts:
        if not problems or "parts" not in problems[-1]:
            problems.append(f"more than {limits.max_parts} MIME parts")
        return
    ctype = part.content_type
    if ctype.startswith("multipart/"):
        if part.depth >= limits.max_depth:
            problems.append(f"MIME nesting deeper than {limits.max_depth}")
            return
        boundary = _boundary(part.headers)
        if not boundary:
            part.defects.append("multipart without boundary")
            return
        for start, end in _split(data, part.content_start, part.end, boundary, part):
            hend = header_block_end(data, start, end)
            headers, defects = _headers(data[start:hend])
            child = Part(start, end, hend, headers, part.depth + 1, defects=defects)
            part.children.append(child)
            _expand(child, data, limits, counter, problems)
    elif ctype == "message/rfc822":
        if part.depth >= limits.max_depth:
            problems.append(f"MIME nesting deeper than {limits.max_depth}")
            return
        cte = str(part.headers.get("content-transfer-encoding", "7bit")).strip().lower()
        if cte not in ("7bit", "8bit", "binary", ""):
            return  # an encoded message/rfc822 is treated as an opaque leaf
        start = part.content_start
        hend = header_block_end(data, start, part.end)
        headers, defects = _headers(data[start:hend])
        child = Part(start, part.end, hend, headers, part.depth + 1, defects=defects)
        part.children.append(child)
        _expand(child, data, limits, counter, problems)


def _split(data: bytes, start: int, end: int, boundary: str, part: Part) -> list[tuple[int, int]]:
    """The [start, end) ranges of the body parts between the delimiters."""
    delim = re.compile(
        rb"(?:\r?\n|^)--"
        + re.escape(boundary.encode("utf-8", "replace"))
        + rb"(--)?[ \t]*(?:\r?\n|$)",
        re.MULTILINE,
    )
    ranges: list[tuple[int, int]] = []
    pos = start
    current: int | None = None
    closed = False
    while True:
        m = delim.search(data, pos, end)
        if m is None:
            break
        # A delimiter at the very start of the content has no preceding CRLF.
        if m.start() == start or data[m.start() : m.start() + 1] in (b"\r", b"\n"):
            if current is not None:
                ranges.append((current, m.start()))
            if m.group(1):
                closed = True
                break
            current = m.end()
            pos = m.end()
        else:
            pos = m.end()
    if current is not None and not closed:
        part.defects.append("missing closing boundary")
        ranges.append((current, end))
    if not ranges:
        part.defects.append("no body parts found")
    return ranges


def decode_payload(data: bytes, part: Part, limit: int) -> tuple[bytes, str | None]:
    """The decoded content of a leaf (at most ``limit`` bytes are produced),
    and a problem description or None."""
    raw = data[part.content_start : part.end]
    cte = str(part.headers.get("content-transfer-encoding", "7bit")).strip().lower()
    try:
        if cte == "base64":
            if len(raw) * 3 // 4 > limit:
                return b"", f"decoded size above {limit} bytes"
            cleaned = re.sub(rb"[^A-Za-z0-9+/=]", b"", raw)
            cleaned += b"=" * (-len(cleaned) % 4)
            try:
                return base64.b64decode(cleaned, validate=False), None
            except (binascii.Error, ValueError) as exc:
                return base64.b64decode(
                    cleaned[: len(cleaned) // 4 * 4] or b""
                ), f"bad base64: {exc}"
        decoded = quopri.decodestring(raw) if cte == "quoted-printable" else raw
    except Exception as exc:
        return b"", f"cannot decode {cte}: {exc!r}"
    if len(decoded) > limit:
        return decoded[:limit], f"decoded size above {limit} bytes"
    return decoded, None
