"""Archives other than zip: which ones defang can list, and which it cannot.

A recipient's archiver opens a file by its content, whatever it is called,
so the format is told by magic numbers. Tar (plain or compressed) is listed
with the standard library; a single gzip, bzip2 or xz file carries one file
whose name is judged (the gzip header's, or the archive's own name without
the suffix) and whose first bytes are sniffed. RAR, 7-Zip, ACE, ARJ, LZH and
CAB cannot be looked into with the standard library: the caller treats them
as content it cannot check.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import tarfile
from collections.abc import Iterator
from typing import IO

__all__ = ["kind_of", "UNREADABLE", "COMPRESSED", "tar_names", "single_file"]

UNREADABLE = frozenset({"rar", "7z", "ace", "arj", "lzh", "cab"})
COMPRESSED = frozenset({"gzip", "bzip2", "xz", "tar"})
_SUFFIXES = (".gz", ".gzip", ".z", ".bz2", ".xz", ".lzma", ".tgz", ".tbz", ".txz")


def kind_of(head: bytes) -> str | None:
    """The archive format ``head`` (the first bytes) starts, or None."""
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head[7:14] == b"**ACE**":
        return "ace"
    if head.startswith(b"\x60\xea") and 0 < int.from_bytes(head[2:4], "little") <= 2600:
        return "arj"
    if re.fullmatch(rb"-(?:lh[0-9a-z]|lz[s45])-", head[2:7]):
        return "lzh"
    if head.startswith(b"MSCF\x00\x00\x00\x00"):
        return "cab"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def tar_names(file: IO[bytes], max_members: int, max_bytes: int) -> Iterator[str] | None:
    """The member names of a (possibly compressed) tar archive, or None
    when it is not one. Raises OverflowError past ``max_members`` members
    or ``max_bytes`` of content (a decompression bomb), after the names
    seen so far."""
    file.seek(0)
    try:
        archive = tarfile.open(fileobj=file, mode="r:*")  # noqa: SIM115
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, ValueError):
        return None

    def names() -> Iterator[str]:
        total = count = 0
        with archive:
            for member in archive:
                count += 1
                total += member.size
                yield member.name
                if count > max_members or total > max_bytes:
                    raise OverflowError("tar archive above the member or size bound")

    return names()


def single_file(file: IO[bytes], kind: str, own_name: str, head: int) -> tuple[str, bytes]:
    """(the name of the one file inside, its first ``head`` bytes) for a
    gzip, bzip2 or xz file that is not a tar archive."""
    file.seek(0)
    inner = own_name
    for suffix in _SUFFIXES:
        if inner.lower().endswith(suffix):
            inner = inner[: -len(suffix)]
            break
    if kind == "gzip":
        inner = _gzip_name(file) or inner
        file.seek(0)
    try:
        return inner, _decompressed_head(file, kind, head)
    except (OSError, EOFError, lzma.LZMAError, ValueError):
        return inner, b""


def _decompressed_head(file: IO[bytes], kind: str, n: int) -> bytes:
    if kind == "gzip":
        with gzip.GzipFile(fileobj=file, mode="rb") as g:
            return g.read(n)
    if kind == "bzip2":
        with bz2.BZ2File(file) as b:
            return b.read(n)
    with lzma.LZMAFile(file) as x:
        return x.read(n)


def _gzip_name(file: IO[bytes]) -> str:
    """The FNAME field of a gzip header (RFC 1952 §2.3.1), or ""."""
    header = file.read(1024)
    if len(header) < 10 or not header[3] & 0x08:
        return ""
    pos = 10
    if header[3] & 0x04:  # FEXTRA
        pos += 2 + int.from_bytes(header[pos : pos + 2], "little")
    end = header.find(b"\x00", pos)
    return header[pos:end].decode("latin-1") if end > pos else ""
