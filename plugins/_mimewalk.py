"""Byte-exact MIME structure, read the way the most lenient client reads it.

The defang plugin keeps every part it does not remove byte for byte, so
this module finds where each part starts and ends in the raw body (RFC
2046 boundaries) and reads each part's header fields itself. Where mail
programs read a structure differently, it takes the reading that exposes
the most content, so that every part some client would show is judged:

- a header line that is neither a field nor indented continues the field
  before it (clients read ``name="x.exe"`` on an unindented line after
  ``;``); Python's parser would stop the header there;
- every Content-Type and Content-Transfer-Encoding field counts, not only
  the first;
- a multipart whose boundary is missing or never occurs is split at the
  first line starting ``--``, as lenient clients do;
- a boundary line is read two ways: as RFC 2046's grammar (and Python's
  parser) reads it, the boundary then only white space before the line end,
  and the way that shows the most, after the same section's note to
  implementors: any line that starts with the boundary is a delimiter (so
  ``--b1junk`` and ``--b1x`` are delimiters of ``b1``), closing only when
  nothing but ``--`` follows, and a delimiter after the closing one starts
  a part again. Readings in between (clients that allow some other
  trailing characters) only join neighbouring parts of the second one, so
  the two between them show every part some client shows. The parts only
  the second reading gives are ``alternate``: judged like the others, but
  their own structure is not held against the message;
- a ``message/rfc822`` part or a multipart sent in base64, quoted-printable
  or uuencode (RFC 2046 §5.2.1 and RFC 2045 §6.4 forbid it; clients decode
  it anyway) is decoded and walked.

The body is read through a ``Source`` a window at a time, never whole.
Nothing here raises on malformed input: problems are recorded as
``defects`` and the walk goes on with what it can read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._decode import CHUNK, IDENTITY, Decoded, Source, decode_range, normal_cte
from ._names import names_in_fields, param_values

__all__ = ["Part", "Limits", "parse_fields", "parse_tree", "strict_reading", "MAX_HEADER"]

MAX_HEADER = 256 * 1024
# A field name as mail actually uses them: RFC 5322 allows any printable
# but ":", yet a line like `name="a:b.exe"` after a ";" is a parameter to
# every client, so "=", quotes and ";" do not make a field name here.
_FIELD = re.compile(rb"([A-Za-z0-9!#$%&'*+.^_`|~-]+)[ \t]*:")
_CONTAINERS = ("message/rfc822", "message/global", "message/news")


@dataclass(frozen=True)
class Limits:
    max_depth: int = 10
    max_parts: int = 500
    max_decoded_size: int = 50 * 1024 * 1024


@dataclass
class Part:
    """A MIME entity: [start, end) of the whole entity in ``source``, its
    header fields (lenient reading) and where its content begins.

    ``inner`` is the decoded content of a container sent in a transfer
    encoding; its children's offsets are into ``inner``."""

    source: Source
    start: int
    end: int
    content_start: int
    fields: list[tuple[str, str]]
    depth: int
    default_type: str = "text/plain"
    children: list[Part] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)  # what a bound kept from being read
    inner: Decoded | None = None
    parent: Part | None = None
    # Where a strict parser (Python's, Postfix's) ends the header block: at
    # the first line that is neither a field nor indented; None when that
    # is the blank line. The content from there is another reading.
    strict_start: int | None = None
    # Only a reading other than the RFC grammar's gives this part (a line
    # that merely starts with the boundary was taken as a delimiter).
    alternate: bool = False

    def values(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.fields if k.lower() == lname]

    @property
    def content_types(self) -> list[str]:
        """Every declared type (lower case, no parameters); the default
        (RFC 2045 §5.2, RFC 2046 §5.1.5) when none is usable."""
        out = []
        for value in self.values("content-type"):
            m = re.match(r"\s*([!#-'*+.0-9A-Z^-~-]+)\s*/\s*([!#-'*+.0-9A-Z^-~-]+)", value, re.I)
            if m:
                out.append(f"{m.group(1)}/{m.group(2)}".lower())
        return out or [self.default_type]

    @property
    def content_type(self) -> str:
        return self.content_types[0]

    @property
    def ctes(self) -> list[str]:
        """Every declared transfer encoding, normalised; ["7bit"] when none."""
        out: list[str] = []
        for v in self.values("content-transfer-encoding"):
            cte = normal_cte(v)
            if cte not in out:
                out.append(cte)
        return out or ["7bit"]

    @property
    def cte(self) -> str:
        return self.ctes[0]

    @property
    def names(self) -> list[str]:
        return names_in_fields(self.fields)

    def walk(self) -> list[Part]:
        return [self, *(p for child in self.children for p in child.walk())]

    def leaves(self) -> list[Part]:
        if not self.children:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]

    def close(self) -> None:
        for p in self.walk():
            if p.inner is not None:
                p.inner.close()


def parse_fields(raw: bytes) -> tuple[list[tuple[str, str]], list[str]]:
    """Header fields of one entity, read leniently, and the defects seen.

    A line that is neither a field nor indented continues the previous
    field (clients read it so); a line without a colon before any field
    is kept as a defect only."""
    fields: list[list[str]] = []
    defects: list[str] = []
    for line in re.split(rb"\r?\n", raw):
        if not line:
            continue
        text = line.decode("utf-8", "surrogateescape")
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1] += " " + text.strip()
            continue
        m = _FIELD.match(line)
        if m:
            fields.append([m.group(1).decode("ascii"), text[m.end() :].strip()])
        elif fields:
            defects.append("header line without a field name")
            fields[-1][1] += " " + text.strip()
        else:
            defects.append("header line without a field name")
    return [(k, v) for k, v in fields], defects


def strict_break(raw: bytes) -> int | None:
    """Offset in ``raw`` (a header block) of the first line that is neither
    a field nor indented, or None."""
    pos = 0
    for line in raw.splitlines(keepends=True):
        bare = line.rstrip(b"\r\n")
        if not bare:
            return None
        if bare[:1] not in (b" ", b"\t") and not _FIELD.match(bare):
            return pos
        pos += len(line)
    return None


def _header_end(src: Source, start: int, end: int) -> tuple[int, bool]:
    """Offset just past the blank line ending the header block, and whether
    one was found within MAX_HEADER."""
    first = src.read(start, start + 2)
    if first.startswith(b"\n"):
        return start + 1, True
    if first == b"\r\n":
        return start + 2, True
    window = src.read(start, min(end, start + MAX_HEADER))
    m = re.search(rb"\r?\n\r?\n", window)
    if m:
        return start + m.end(), True
    return min(end, start + len(window)), False


class _Counter:
    def __init__(self) -> None:
        self.parts = 0


def _entity(
    src: Source, start: int, end: int, depth: int, default_type: str, parent: Part | None
) -> Part:
    hend, found = _header_end(src, start, end)
    raw = src.read(start, hend)
    fields, defects = parse_fields(raw)
    part = Part(src, start, end, hend, fields, depth, default_type, parent=parent)
    part.alternate = parent is not None and parent.alternate
    part.defects += defects
    if not found and hend < end:
        part.unseen.append(f"header block longer than {MAX_HEADER} bytes")
    cut = strict_break(raw)
    if cut is not None:
        part.strict_start = start + cut
    return part


def strict_reading(part: Part) -> Part:
    """``part`` as a strict parser reads it: the fields before the break,
    and everything from the break on as content."""
    assert part.strict_start is not None
    fields, _ = parse_fields(part.source.read(part.start, part.strict_start))
    return Part(
        part.source, part.start, part.end, part.strict_start, fields, part.depth,
        part.default_type, parent=part.parent, alternate=part.alternate,
    )  # fmt: skip


def parse_tree(
    src: Source, fields: list[tuple[str, str]], limits: Limits
) -> tuple[Part, list[str]]:
    """The tree of the message whose header fields are given and whose body
    is ``src``; offsets are into ``src`` (or a container's ``inner``).
    Returns (root, problems that hit a limit)."""
    root = Part(src, 0, src.size, 0, list(fields), 0)
    problems: list[str] = []
    _expand(root, limits, _Counter(), problems)
    return root, problems


def _expand(part: Part, limits: Limits, counter: _Counter, problems: list[str]) -> None:
    counter.parts += 1
    if counter.parts > limits.max_parts:
        if f"more than {limits.max_parts} MIME parts" not in problems:
            problems.append(f"more than {limits.max_parts} MIME parts")
        return
    types = part.content_types
    multipart = [t for t in types if t.startswith("multipart/")]
    container = [t for t in types if t in _CONTAINERS]
    if not multipart and not container:
        return
    if part.depth >= limits.max_depth:
        problems.append(f"MIME nesting deeper than {limits.max_depth}")
        return
    if len(set(types)) > 1:
        part.defects.append("Content-Type given twice, differently: " + ", ".join(types))
    src, start, end = part.source, part.content_start, part.end
    encoded = [c for c in part.ctes if c not in IDENTITY]
    if encoded:
        part.defects.append(f"{types[0]} sent in {encoded[0]} (RFC 2045 §6.4)")
        inner = decode_range(src, start, end, encoded[0], limits.max_decoded_size)
        if inner.truncated:
            inner.close()
            problems.append(f"encoded {types[0]} part above {limits.max_decoded_size} bytes")
            return
        part.inner = inner
        src, start, end = inner, 0, inner.size
    if multipart:
        _split_multipart(part, src, start, end, limits, counter, problems)
    else:
        child = _entity(src, start, end, part.depth + 1, "text/plain", part)
        part.children.append(child)
        _expand(child, limits, counter, problems)


def _split_multipart(
    part: Part,
    src: Source,
    start: int,
    end: int,
    limits: Limits,
    counter: _Counter,
    problems: list[str],
) -> None:
    boundaries: list[str] = []
    for value in part.values("content-type"):
        for b in param_values(value, "boundary"):
            for variant in (b, b.strip(), b.strip().strip("\"'")):
                if variant and variant not in boundaries:
                    boundaries.append(variant)
    ranges: list[tuple[int, int]] = []
    closed = True
    # Clients differ in which Content-Type they take: every boundary that
    # occurs gives parts, all of them judged.
    readings = 0
    for b in boundaries:
        found, done = _split(src, start, end, b.encode("utf-8", "surrogateescape"))
        if found and not set(found) <= set(ranges):
            readings += 1
            ranges += [r for r in found if r not in ranges]
            closed = closed and done
    if readings > 1:
        part.defects.append("two boundaries that both split the content")
    if not ranges:
        guess = _guess_boundary(src, start, end)
        if guess is not None:
            ranges, closed = _split(src, start, end, guess)
            part.defects.append(
                "multipart without boundary" if not boundaries else "boundary never occurs"
            )
    # The reading that shows the most: every line that starts with the boundary.
    others: list[tuple[int, int]] = []
    loose: list[bytes] = []  # delimiter lines only that reading takes
    for b in boundaries:
        raw = b.encode("utf-8", "surrogateescape")
        found, _ = _split(src, start, end, raw, prefix=True)
        others += [r for r in found if r not in ranges and r not in others]
        if found:
            loose += _loose_lines(src, start, end, raw)
    if not ranges and not others:
        part.defects.append("no body parts found")
        return  # judged as a leaf: its whole content is looked at
    if not ranges:
        ranges, others = others, []  # the only reading there is
    if not closed:
        part.defects.append("missing closing boundary")
    default = "message/rfc822" if part.content_types[0] == "multipart/digest" else "text/plain"
    for s, e in ranges:
        child = _entity(src, s, e, part.depth + 1, default, part)
        part.children.append(child)
        _expand(child, limits, counter, problems)
        if counter.parts > limits.max_parts:
            return
    # A nested multipart whose boundary starts with this one (b1 and b1x)
    # is what the second reading splits most often; its delimiter lines are
    # no fault of this multipart.
    nested = _nested_delimiters(part)
    if any(line not in nested for line in loose):
        part.defects.append(
            "a line starting with the boundary goes on after it (RFC 2046 §5.1.1):"
            " read both as a delimiter and as content"
        )
    # A part both readings give (an inner part of a nested b1x) is judged once.
    known = {(p.start, p.end) for p in part.walk() if p.source is src}
    for s, e in others:
        if (s, e) in known:
            continue
        child = _entity(src, s, e, part.depth + 1, default, part)
        child.alternate = True
        part.children.append(child)
        _expand(child, limits, counter, problems)
        if counter.parts > limits.max_parts:
            return


def _nested_delimiters(part: Part) -> set[bytes]:
    """The delimiter lines (without white space and line end) of every
    multipart below ``part`` in the RFC grammar's reading."""
    out: set[bytes] = set()
    for p in part.walk()[1:]:
        if p.alternate or not any(t.startswith("multipart/") for t in p.content_types):
            continue
        for value in p.values("content-type"):
            for b in param_values(value, "boundary"):
                raw = b.strip().strip("\"'").encode("utf-8", "surrogateescape")
                out |= {b"--" + raw, b"--" + raw + b"--"}
    return out


def _loose_lines(src: Source, start: int, end: int, boundary: bytes) -> list[bytes]:
    """The lines that start with ``--boundary`` but are not its delimiter
    in the RFC grammar, without trailing white space."""
    strict = re.compile(rb"--" + re.escape(boundary) + rb"(--)?[ \t]*\r?\n?\Z")
    out = []
    for offset in _lines_starting(src, start, end, b"--" + boundary):
        line = _line(src, offset, end)
        if not strict.match(line):
            out.append(line.rstrip())
    return out


def _lines_starting(src: Source, start: int, end: int, prefix: bytes) -> list[int]:
    """Offsets of the lines in [start, end) that begin with ``prefix``."""
    found = []
    if src.read(start, start + len(prefix)) == prefix:
        found.append(start)
    needle = b"\n" + prefix
    pos = start
    while pos < end:
        stop = min(end, pos + CHUNK)
        window = src.read(pos, min(end, stop + len(needle)))
        at = 0
        while (j := window.find(needle, at)) >= 0 and pos + j < stop:
            found.append(pos + j + 1)
            at = j + 1
        pos = stop
    return found


def _line(src: Source, offset: int, end: int) -> bytes:
    data = src.read(offset, min(end, offset + 4096))
    nl = data.find(b"\n")
    return data if nl < 0 else data[: nl + 1]


def _split(
    src: Source, start: int, end: int, boundary: bytes, prefix: bool = False
) -> tuple[list[tuple[int, int]], bool]:
    """The [start, end) ranges of the body parts between the delimiter lines
    of ``boundary`` (RFC 2046 §5.1.1: the CRLF before a delimiter belongs
    to it), and whether the closing delimiter was seen.

    A delimiter line is ``--boundary``, ``--`` for the closing one, then
    only white space (the grammar). With ``prefix``, the reading that shows
    the most: any line that starts with ``--boundary`` is a delimiter (the
    note to implementors in the same section), closing only when nothing
    but ``--`` and white space follows, and a delimiter after the closing
    one starts a part again (parsers that split at every delimiter)."""
    delim = re.compile(rb"--" + re.escape(boundary) + rb"(--)?[ \t]*\r?\n?\Z")
    ranges: list[tuple[int, int]] = []
    current: int | None = None
    closed = False
    for offset in _lines_starting(src, start, end, b"--" + boundary):
        line = _line(src, offset, end)
        m = delim.match(line)
        if not m and not prefix:
            continue
        if current is not None:
            cut = offset
            if cut > current and src.read(cut - 1, cut) == b"\n":
                cut -= 1
                if cut > current and src.read(cut - 1, cut) == b"\r":
                    cut -= 1
            ranges.append((current, max(cut, current)))
            current = None
        closed = bool(m and m.group(1))
        if closed and not prefix:
            return ranges, True
        if not closed:
            current = offset + len(line)
    if current is not None:
        ranges.append((current, end))
    return ranges, closed


def _guess_boundary(src: Source, start: int, end: int) -> bytes | None:
    """The boundary a lenient client takes: the first line starting ``--``."""
    for offset in _lines_starting(src, start, end, b"--")[:1]:
        line = _line(src, offset, end).rstrip(b"\r\n \t")
        if line.endswith(b"--") and len(line) > 4:
            line = line[:-2]
        if len(line) > 2:
            return line[2:]
    return None
