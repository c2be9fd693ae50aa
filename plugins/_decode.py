"""Random-access byte sources and streaming transfer decoders/encoders.

The defang walk reads the message body where it lies (in memory when
small, in the spool file when large) a window at a time, and decodes
content into spooled temporary files, so a 50 MiB message is never held
whole in memory. Decoders are lenient the way mail clients are: base64
ignores characters outside its alphabet, quoted-printable keeps what it
cannot read, uuencode skips lines it cannot decode (RFC 2045 §6, POSIX
uuencode).
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import IO, Protocol

__all__ = [
    "CHUNK",
    "Source",
    "BytesSource",
    "FileSource",
    "Decoded",
    "spool",
    "decode_range",
    "encode",
    "normal_cte",
    "IDENTITY",
]

CHUNK = 1 << 20
SPOOL_AT = 1 << 20
IDENTITY = frozenset({"7bit", "8bit", "binary", ""})


class Source(Protocol):
    """Bytes readable by offset: [start, end) clipped to the size."""

    size: int

    def read(self, start: int, end: int) -> bytes: ...


class BytesSource:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, start: int, end: int) -> bytes:
        return self.data[start:end]


class FileSource:
    """A seekable binary file of ``size`` bytes; reads are serialised."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self.file = file
        self.size = size
        self._lock = threading.Lock()

    def read(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if end <= start:
            return b""
        with self._lock:
            self.file.seek(start)
            return self.file.read(end - start)


def spool() -> IO[bytes]:
    """A temporary file kept in memory up to 1 MiB, then on disk."""
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_AT)


class Decoded(FileSource):
    """Decoded content in a spool; ``truncated`` when the limit cut it."""

    def __init__(self) -> None:
        super().__init__(spool(), 0)
        self.truncated = False

    def write(self, data: bytes) -> None:
        with self._lock:
            self.file.seek(0, 2)
            self.file.write(data)
            self.size += len(data)

    def head(self, n: int = 4096) -> bytes:
        return self.read(0, n)

    def close(self) -> None:
        self.file.close()


def chunks(src: Source, start: int, end: int, size: int = CHUNK) -> Iterator[bytes]:
    pos = start
    end = min(end, src.size)
    while pos < end:
        piece = src.read(pos, min(end, pos + size))
        if not piece:
            return
        yield piece
        pos += len(piece)


def normal_cte(value: str | None) -> str:
    """``Base64; junk`` -> ``base64``; absent -> ``7bit``."""
    if value is None:
        return "7bit"
    token = re.split(r"[\s;(]", value.strip(), maxsplit=1)[0].strip('"').lower()
    return {"x-uuencode": "uuencode", "x-uue": "uuencode", "uue": "uuencode"}.get(token, token)


# Every byte outside base64's alphabet (and "="): bytes.translate drops them
# about ten times faster than a regex, holding the GIL that much less.
_B64_JUNK = bytes(
    c for c in range(256) if not ((chr(c).isascii() and chr(c).isalnum()) or c in b"+/")
)
# Content is decoded a slice at a time: the walk runs in a thread beside the
# event loop, and each C call (a2b_base64, a2b_qp) holds the GIL for its
# whole length, about 1 ms per 256 KiB here instead of 5 ms or more per MiB.
SLICE = 256 * 1024


def _b64_decoder() -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    carry = b""

    def feed(data: bytes) -> bytes:
        nonlocal carry
        clean = carry + data.translate(None, _B64_JUNK)
        cut = len(clean) // 4 * 4
        carry = clean[cut:]
        return base64.b64decode(clean[:cut]) if cut else b""

    def finish() -> bytes:
        if len(carry) < 2:
            return b""  # one stray character carries no whole byte
        return base64.b64decode(carry + b"=" * (-len(carry) % 4))

    return feed, finish


def _line_decoder(
    decode_line: Callable[[bytes], bytes],
) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    carry = b""

    def feed(data: bytes) -> bytes:
        nonlocal carry
        data = carry + data
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        return decode_line(data[:cut]) if cut else b""

    def finish() -> bytes:
        return decode_line(carry) if carry else b""

    return feed, finish


def _qp(lines: bytes) -> bytes:
    return quopri.decodestring(lines.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")


def _uu(lines: bytes) -> bytes:
    out = []
    for line in lines.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith((b"begin ", b"end")) or stripped == b"`":
            continue
        try:
            out.append(binascii.a2b_uu(line.rstrip(b"\r\n")))
        except binascii.Error:
            # Some encoders pad short lines badly; decode what the length says.
            try:
                nbytes = (line[0] - 32) & 63
                out.append(binascii.a2b_uu(line[: ((nbytes + 2) // 3) * 4 + 1]))
            except (binascii.Error, IndexError):
                continue
    return b"".join(out)


def decode_range(src: Source, start: int, end: int, cte: str, limit: int) -> Decoded:
    """Decode [start, end) of ``src`` by the transfer encoding ``cte``
    (identity for one it does not know, as clients do), stopping after
    ``limit`` bytes (then ``truncated`` is set)."""
    out = Decoded()
    if cte == "base64":
        feed, finish = _b64_decoder()
    elif cte == "quoted-printable":
        feed, finish = _line_decoder(_qp)
    elif cte == "uuencode":
        feed, finish = _line_decoder(_uu)
    else:

        def feed(data: bytes) -> bytes:
            return data

        def finish() -> bytes:
            return b""

    for piece in chunks(src, start, end, SLICE):
        _put(out, feed(piece), limit)
        if out.truncated:
            return out
    _put(out, finish(), limit)
    return out


def _put(out: Decoded, data: bytes, limit: int) -> None:
    room = limit - out.size
    if len(data) > room:
        out.write(data[: max(room, 0)])
        out.truncated = True
    elif data:
        out.write(data)


def encode(src: Source, cte: str, sink: IO[bytes], name: str = "file") -> None:
    """Write all of ``src`` to ``sink`` in transfer encoding ``cte``, CRLF line ends."""
    if cte == "base64":
        for piece in chunks(src, 0, src.size, 57 * 1024):
            sink.write(base64.encodebytes(piece).replace(b"\n", b"\r\n"))
    elif cte == "quoted-printable":
        for piece in _lines(src):
            sink.write(quopri.encodestring(piece.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n"))
    elif cte == "uuencode":
        sink.write(b"begin 644 " + name.encode("ascii", "replace") + b"\r\n")
        for piece in chunks(src, 0, src.size, 45 * 1024):
            for i in range(0, len(piece), 45):
                sink.write(binascii.b2a_uu(piece[i : i + 45]).replace(b"\n", b"\r\n"))
        sink.write(b"`\r\nend\r\n")
    else:
        for piece in chunks(src, 0, src.size):
            sink.write(piece)


def _lines(src: Source) -> Iterator[bytes]:
    """Pieces of ``src`` that end at line ends (but the last)."""
    carry = b""
    for piece in chunks(src, 0, src.size):
        data = carry + piece
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if cut:
            yield data[:cut]
    if carry:
        yield carry
