"""The files inside TNEF (winmail.dat, application/ms-tnef), as Outlook shows them.

Outlook sends rich mail as a TNEF stream ([MS-OXTNEF]) in a part usually
named ``winmail.dat``; Outlook and other clients that read TNEF show the
attachments inside it as ordinary attachments. This module lists them:
every name each one carries (the legacy ``attAttachTitle`` and transport
file name, and the MAPI display, short and long file names and path
names), its MIME tag, and where its data lies in the stream; a message
attached inside (``PR_ATTACH_DATA_OBJ`` holding a TNEF stream of its
own) is listed too, one level deeper.

The stream is read where it lies, a field at a time, through a ``Source``;
data is never copied here. A stream that cannot be read to its end raises
``TnefError`` after the files seen so far (the caller judges those first).
No library is used: tnefparse is not in Debian and reads the whole stream
into memory; the format is small ([MS-OXTNEF] §2.1.3, property values as
in §2.1.3.4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ._decode import Source

__all__ = ["SIGNATURE", "TnefError", "TnefFile", "read_tnef"]

SIGNATURE = b"\x78\x9f\x3e\x22"  # 0x223E9F78, little-endian
LVL_ATTACHMENT = 2
ATT_ATTACH_REND_DATA = 0x9002  # starts an attachment
ATT_ATTACH_TITLE = 0x8010
ATT_ATTACH_DATA = 0x800F
ATT_ATTACH_TRANSPORT_FILENAME = 0x9001
ATT_ATTACHMENT = 0x9005  # the attachment's MAPI properties
PR_ATTACH_DATA = 0x3701  # PR_ATTACH_DATA_BIN (binary) or _OBJ (object)
PR_ATTACH_MIME_TAG = 0x370E
NAME_PROPS = frozenset(
    {
        0x3001,  # PR_DISPLAY_NAME
        0x3704,  # PR_ATTACH_FILENAME
        0x3707,  # PR_ATTACH_LONG_FILENAME
        0x3708,  # PR_ATTACH_PATHNAME
        0x370D,  # PR_ATTACH_LONG_PATHNAME
    }
)
PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT = 0x1E, 0x1F, 0x102, 0x0D
_VARIABLE = frozenset({PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT})
_FIXED = {
    0x01: 4,  # PT_NULL
    0x02: 4,  # PT_SHORT, padded
    0x03: 4,  # PT_LONG
    0x04: 4,  # PT_FLOAT
    0x05: 8,  # PT_DOUBLE
    0x06: 8,  # PT_CURRENCY
    0x07: 8,  # PT_APPTIME
    0x0A: 4,  # PT_ERROR
    0x0B: 4,  # PT_BOOLEAN, padded
    0x14: 8,  # PT_I8
    0x40: 8,  # PT_SYSTIME
    0x48: 16,  # PT_CLSID
}
MV_FLAG = 0x1000
# IID_IMessage: an attached message, whose data is a TNEF stream itself.
IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")


class TnefError(ValueError):
    """The stream is not TNEF, or ends or breaks before its end; ``files``
    holds the attachments read before that."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.files: list[TnefFile] = []


@dataclass
class TnefFile:
    """One attachment: its names (as given, possibly none), its MIME tag,
    and its data as [start, end) in the source; ``depth`` 1 for the
    stream's own attachments, 2 for those of a message attached in it."""

    names: list[str] = field(default_factory=list)
    mime_tag: str | None = None
    start: int = 0
    end: int = 0
    depth: int = 1
    embedded: bool = False  # an attached message: its files follow


@dataclass
class _Reader:
    src: Source
    pos: int
    end: int

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise TnefError(f"ends inside a field (at byte {self.pos}, {n} bytes wanted)")
        data = self.src.read(self.pos, self.pos + n)
        if len(data) != n:
            raise TnefError(f"ends inside a field (at byte {self.pos})")
        self.pos += n
        return data

    def u16(self) -> int:
        value: int = struct.unpack("<H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.end:
            raise TnefError(f"a value runs past its end (at byte {self.pos})")
        self.pos += n


def read_tnef(
    src: Source, start: int = 0, end: int | None = None, max_depth: int = 3
) -> list[TnefFile]:
    """Every attachment in the TNEF stream at [start, end) of ``src``, in
    order; those of attached messages (to ``max_depth`` levels) after the
    message that holds them. Raises TnefError when the stream cannot be
    read to its end; ``files`` on the exception holds what was read."""
    files: list[TnefFile] = []
    try:
        _stream(src, start, src.size if end is None else end, 1, max_depth, files)
    except TnefError as exc:
        exc.files = files
        raise
    return files


def _stream(
    src: Source, start: int, end: int, depth: int, max_depth: int, files: list[TnefFile]
) -> None:
    r = _Reader(src, start, end)
    if r.take(4) != SIGNATURE:
        raise TnefError("no TNEF signature")
    r.u16()  # the legacy key
    current: TnefFile | None = None
    while r.pos < end:
        level = r.take(1)[0]
        attr = r.u32()
        length = r.u32()
        at = r.pos
        r.skip(length)
        r.u16()  # checksum: not checked (Outlook shows the files regardless)
        if level != LVL_ATTACHMENT:
            continue
        ident = attr & 0xFFFF
        if ident == ATT_ATTACH_REND_DATA or current is None:
            current = TnefFile(depth=depth)
            files.append(current)
        if ident in (ATT_ATTACH_TITLE, ATT_ATTACH_TRANSPORT_FILENAME):
            _add(current.names, _string8(src.read(at, at + min(length, 4096))))
        elif ident == ATT_ATTACH_DATA:
            current.start, current.end = at, at + length
        elif ident == ATT_ATTACHMENT:
            _props(src, at, at + length, current, depth, max_depth, files)


def _add(names: list[str], name: str) -> None:
    if name and name not in names:
        names.append(name)


def _string8(raw: bytes) -> str:
    # The OEM code page decides; latin-1 keeps every byte (and the ASCII
    # of an extension) whatever it is.
    return raw.rstrip(b"\x00").decode("latin-1")


def _props(
    src: Source,
    start: int,
    end: int,
    current: TnefFile,
    depth: int,
    max_depth: int,
    files: list[TnefFile],
) -> None:
    """The MAPI properties of one attachment ([MS-OXTNEF] §2.1.3.4)."""
    r = _Reader(src, start, end)
    count = r.u32()
    if count > (end - start) // 4:
        raise TnefError(f"{count} properties cannot fit in {end - start} bytes")
    for _ in range(count):
        ptype = r.u16()
        pid = r.u16()
        if pid >= 0x8000:  # a named property: its GUID and name or number
            r.skip(16)
            if r.u32() == 1:
                r.skip(_padded(r.u32()))
            else:
                r.skip(4)
        multi = bool(ptype & MV_FLAG)
        base = ptype & ~MV_FLAG
        if base in _FIXED:
            values = r.u32() if multi else 1
            r.skip(values * _FIXED[base])
            continue
        if base not in _VARIABLE:
            raise TnefError(f"property 0x{pid:04x} of unknown type 0x{ptype:04x}")
        values = r.u32()
        if values > (end - r.pos) // 4:
            raise TnefError(f"{values} values cannot fit in {end - r.pos} bytes")
        for _ in range(values):
            size = r.u32()
            at = r.pos
            r.skip(_padded(size))
            if pid in NAME_PROPS or pid == PR_ATTACH_MIME_TAG:
                raw = src.read(at, at + min(size, 4096))
                text = (
                    raw.decode("utf-16-le", "replace").rstrip("\x00")
                    if base == PT_UNICODE
                    else _string8(raw)
                )
                if pid == PR_ATTACH_MIME_TAG:
                    current.mime_tag = current.mime_tag or text.strip().lower() or None
                else:
                    _add(current.names, text)
            elif pid == PR_ATTACH_DATA and base == PT_OBJECT:
                _object(src, at, at + size, current, depth, max_depth, files)
            elif pid == PR_ATTACH_DATA and base == PT_BINARY:
                current.start, current.end = at, at + size


def _object(
    src: Source,
    start: int,
    end: int,
    current: TnefFile,
    depth: int,
    max_depth: int,
    files: list[TnefFile],
) -> None:
    """PR_ATTACH_DATA_OBJ: an interface id, then the object's data; an
    attached message (IID_IMessage) is a TNEF stream of its own."""
    current.start, current.end = min(start + 16, end), end
    if src.read(start, start + 16) != IID_IMESSAGE:
        return  # an OLE object: its data is judged as content
    current.embedded = True
    if depth >= max_depth:
        raise TnefError(f"messages attached inside TNEF deeper than {max_depth}")
    _stream(src, start + 16, end, depth + 1, max_depth, files)


def _padded(n: int) -> int:
    return (n + 3) // 4 * 4
