"""Attachments outside MIME that mail clients still show as files.

Before MIME, and in some clients still, a file travels inside a text body:
a uuencoded block (``begin 644 name`` ... ``end``, or ``begin-base64``),
a BinHex 4.0 block (``(This file must be converted with BinHex 4.0)`` then
``:`` ... ``:``), or a yEnc block (``=ybegin ... name=`` ... ``=yend``).
Outlook, Thunderbird and newsreaders show these as attachments, so they
are judged like MIME attachments: by the name they carry and by their
decoded content. ``find_blocks`` finds each one in a decoded text part.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ._decode import CHUNK, Decoded, Source

__all__ = ["Block", "find_blocks", "binhex_decode"]

_UU_BEGIN = re.compile(rb"begin(-base64)?[ \t]+([0-7]{1,4})[ \t]+([^\r\n]*?)[ \t]*\r?\n?\Z")
_YBEGIN = re.compile(rb"=ybegin[ \t].*?\bname=([^\r\n]*?)[ \t]*\r?\n?\Z")
_BINHEX = re.compile(rb"\(This file must be converted with BinHex[^)]*\)", re.IGNORECASE)


@dataclass
class Block:
    """A file found in a text part: [start, end) in the decoded text."""

    kind: str  # uuencode | binhex | yenc
    start: int
    end: int
    name: str
    content: Decoded


def lines(src: Source, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset, line with its line end) over ``src`` from ``start``."""
    pos = start
    carry = b""
    while pos < src.size:
        piece = src.read(pos, pos + CHUNK)
        data = carry + piece
        base = pos - len(carry)
        pos += len(piece)
        at = 0
        while (nl := data.find(b"\n", at)) >= 0:
            yield base + at, data[at : nl + 1]
            at = nl + 1
        carry = data[at:]
    if carry:
        yield src.size - len(carry), carry


# Where a block may start: a uuencode or yEnc header at the start of a line
# (after quote marks), or the BinHex notice anywhere in a line. Each is
# searched by a regex with a literal first character over a window of
# whole lines, at C speed; only the lines found are read one by one.
_HEADER = re.compile(
    rb"\n[ \t>]*(?:begin(?:-base64)?[ \t]+[0-7]{1,4}[ \t]|=ybegin[ \t][^\n]*?\bname=)"
)
_NOTICE = re.compile(rb"\((?i:this file must be converted with binhex)")


class _Marks:
    """The offsets of the lines of ``text`` where a block may start, a
    window of whole lines (about ``CHUNK`` bytes) at a time."""

    def __init__(self, text: Source) -> None:
        self.text = text
        # The window, after a line end standing for the one before it:
        # data[i] is text[base + i].
        self.base = -1
        self.data = b"\n"
        # Per pattern, the next line found from where it was last searched:
        # (searched from, line start in data or None for none in the window).
        self.ahead: list[tuple[int, int | None]] = []

    def next(self, pos: int) -> int | None:
        """The first such line at or after ``pos`` (a line start), or None."""
        while pos < self.text.size:
            if not self.base < pos < self.base + len(self.data):
                self._load(pos)
            at = pos - self.base
            hits = [h for h in (self._next(0, at), self._next(1, at)) if h is not None]
            if hits:
                return self.base + min(hits)
            pos = self.base + len(self.data)
        return None

    def _next(self, i: int, at: int) -> int | None:
        searched, line = self.ahead[i]
        if searched <= at and (line is None or line >= at):
            return line
        if i == 0:
            m = _HEADER.search(self.data, at - 1)  # the line end before ``at`` too
            line = m.start() + 1 if m else None
        else:
            m = _NOTICE.search(self.data, at)
            line = self.data.rfind(b"\n", 0, m.start()) + 1 if m else None
        self.ahead[i] = (at, line)
        return line

    def lines_from(self, pos: int) -> Iterator[tuple[int, bytes]]:
        """(offset, line with its line end) from ``pos`` (a line start) on,
        read from the same windows (a file of many small blocks is read
        once, not once per block)."""
        while pos < self.text.size:
            if not self.base < pos < self.base + len(self.data):
                self._load(pos)
            at = pos - self.base
            nl = self.data.find(b"\n", at)
            line = self.data[at:] if nl < 0 else self.data[at : nl + 1]
            yield pos, line
            pos += len(line)

    def _load(self, pos: int) -> None:
        data = self.text.read(pos, pos + CHUNK)
        while pos + len(data) < self.text.size:
            cut = data.rfind(b"\n") + 1
            if cut:
                data = data[:cut]
                break
            data += self.text.read(pos + len(data), pos + len(data) + CHUNK)  # a long line
        self.base, self.data = pos - 1, b"\n" + data
        self.ahead = [(0, -1)] * 2  # nothing known yet


def find_blocks(text: Source, limit: int, max_blocks: int | None = None) -> list[Block]:
    """Every uuencode, BinHex 4.0 and yEnc block in a decoded text part, or
    the first ``max_blocks`` + 1 of them (more than the caller will look
    at). Content beyond ``limit`` bytes is cut (``content.truncated``).

    Only the lines where a block may start are read one by one (the rest
    is searched by a regex); a block's lines are read from its first."""
    found: list[Block] = []
    marks = _Marks(text)
    pos: int | None = 0
    while pos is not None and (pos := marks.next(pos)) is not None:
        it = marks.lines_from(pos)
        offset, line = next(it)
        pos = offset + len(line)
        block = _block_at(it, offset, line, limit)
        if block is not None:
            found.append(block)
            pos = max(pos, block.end)
            if max_blocks is not None and len(found) > max_blocks:
                break
    return found


def _block_at(
    it: Iterator[tuple[int, bytes]], offset: int, line: bytes, limit: int
) -> Block | None:
    """The block whose first line is ``line``, its lines read from ``it``."""
    stripped = line.lstrip(b" \t>")  # quoted in a reply, still shown as a file
    if stripped is not line and stripped[:1] in (b"b", b"="):
        body = _unquoted(it, line[: len(line) - len(stripped)])
    else:
        body = it
    if stripped.startswith(b"begin") and (m := _UU_BEGIN.match(stripped)):
        return _uu_block(body, offset, m, limit)
    if stripped.startswith(b"=ybegin") and (m := _YBEGIN.match(stripped)):
        return _yenc_block(body, offset, m.group(1), limit)
    if _BINHEX.search(stripped):
        return _binhex_block(body, offset, limit)
    return None


def _unquoted(it: Iterator[tuple[int, bytes]], prefix: bytes) -> Iterator[tuple[int, bytes]]:
    """The lines of a block quoted in a reply, without the quote marks."""
    for offset, line in it:
        if not line.startswith(prefix.rstrip()):
            return
        yield (
            offset,
            line[len(prefix) :] if line.startswith(prefix) else line[len(prefix.rstrip()) :],
        )


def _name(raw: bytes) -> str:
    return raw.strip().strip(b'"').decode("utf-8", "surrogateescape")


def _uu_block(it: Iterator[tuple[int, bytes]], start: int, m: re.Match[bytes], limit: int) -> Block:
    out = Decoded()
    as_base64 = bool(m.group(1))
    end = start
    pending = b""
    for offset, line in it:
        end = offset + len(line)
        body = line.strip()
        if (as_base64 and body == b"====") or (not as_base64 and body == b"end"):
            break
        if out.size >= limit:
            out.truncated = True
            continue
        try:
            if as_base64:
                pending += re.sub(rb"[^A-Za-z0-9+/=]", b"", body)
                cut = len(pending) // 4 * 4
                out.write(binascii.a2b_base64(pending[:cut]))
                pending = pending[cut:]
            elif body and body != b"`":
                out.write(binascii.a2b_uu(line.rstrip(b"\r\n")))
        except binascii.Error:
            continue
    return Block("uuencode", start, end, _name(m.group(3)), out)


def _yenc_block(it: Iterator[tuple[int, bytes]], start: int, name: bytes, limit: int) -> Block:
    out = Decoded()
    end = start
    for offset, line in it:
        end = offset + len(line)
        body = line.rstrip(b"\r\n")
        if body.startswith(b"=yend"):
            break
        if body.startswith(b"=ypart"):
            continue
        if out.size >= limit:
            out.truncated = True
            continue
        out.write(_yenc_line(body))
    return Block("yenc", start, end, _name(name), out)


def _yenc_line(body: bytes) -> bytes:
    decoded = bytearray()
    escape = False
    for c in body:
        if escape:
            decoded.append((c - 64 - 42) & 0xFF)
            escape = False
        elif c == 0x3D:  # '='
            escape = True
        else:
            decoded.append((c - 42) & 0xFF)
    return bytes(decoded)


def _binhex_block(it: Iterator[tuple[int, bytes]], start: int, limit: int) -> Block:
    encoded = bytearray()
    end = start
    begun = False
    for offset, line in it:
        end = offset + len(line)
        body = line.strip()
        if not begun:
            if not body.startswith(b":"):
                if body:
                    break  # text after the notice: no data follows
                continue
            begun = True
            body = body[1:]
        if b":" in body:
            encoded += body[: body.index(b":")]
            break
        encoded += body
        if len(encoded) > limit * 4 // 3 + 1024:
            break
    name, content = binhex_decode(bytes(encoded), limit)
    return Block("binhex", start, end, name, content)


_BINHEX_ALPHABET = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
_BINHEX_VALUE = {c: i for i, c in enumerate(_BINHEX_ALPHABET)}


def binhex_decode(encoded: bytes, limit: int) -> tuple[str, Decoded]:
    """The file name and the data fork of BinHex 4.0 data (between the
    colons). Bad characters are skipped and a short stream gives what it
    holds; the CRCs are not checked (a client that shows the name does not
    check them either)."""
    bits = 0
    nbits = 0
    raw = bytearray()
    for c in encoded:
        value = _BINHEX_VALUE.get(c)
        if value is None:
            continue
        bits = (bits << 6) | value
        nbits += 6
        if nbits >= 8:
            nbits -= 8
            raw.append((bits >> nbits) & 0xFF)
    data = _unrle(bytes(raw))
    out = Decoded()
    if not data:
        return "", out
    n = data[0]
    name = data[1 : 1 + n].decode("mac_roman", "replace")
    at = 1 + n + 1 + 4 + 4 + 2  # version, type, creator, flags
    size = int.from_bytes(data[at : at + 4], "big")
    fork_start = at + 4 + 4 + 2  # data length, resource length, header CRC
    fork = data[fork_start : fork_start + min(size, limit)]
    out.write(fork)
    out.truncated = size > limit
    return name, out


def _unrle(data: bytes) -> bytes:
    """Undo BinHex's run-length coding: 0x90 n repeats the previous byte."""
    out = bytearray()
    i = 0
    while i < len(data):
        c = data[i]
        if c == 0x90 and i + 1 < len(data):
            count = data[i + 1]
            if count == 0:
                out.append(0x90)
            elif out:
                out += bytes([out[-1]]) * (count - 1)
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)
