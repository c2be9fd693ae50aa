"""Writing a changed body: splice replacements into the original bytes.

Edits are (start, end, replacement) ranges in one ``Source``. A container
sent in a transfer encoding, and a text part with a file removed from
inside it, are rebuilt from their decoded content and encoded again with
the part's own transfer encoding, so each edit is applied where it lies and
everything around it is copied byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO

from ._decode import Decoded, Source, chunks, encode, spool

__all__ = ["Edits", "splice"]


@dataclass
class _Layer:
    source: Source
    depth: float
    owner: tuple[Source, int, int, str, str] | None  # where its encoded form goes
    edits: list[tuple[int, int, bytes | Source]] = field(default_factory=list)


class Edits:
    """Replacements collected per source, applied innermost first."""

    def __init__(self, top: Source) -> None:
        self.top = top
        self._layers: dict[int, _Layer] = {id(top): _Layer(top, -1, None)}

    def layer(
        self,
        source: Source,
        depth: float,
        owner: tuple[Source, int, int, str, str] | None = None,
    ) -> None:
        """Declare ``source`` (decoded content) whose re-encoded form
        replaces owner = (source, start, end, cte, name)."""
        if id(source) not in self._layers:
            self._layers[id(source)] = _Layer(source, depth, owner)

    def add(self, source: Source, start: int, end: int, data: bytes | Source) -> None:
        self._layers[id(source)].edits.append((start, end, data))

    @property
    def empty(self) -> bool:
        return not any(layer.edits for layer in self._layers.values())

    def render(self) -> IO[bytes]:
        """The new top-level body, in a spool positioned at 0."""
        for layer in sorted(self._layers.values(), key=lambda la: -la.depth):
            if layer.owner is None or not layer.edits:
                continue
            rebuilt = Decoded()
            splice(layer.source, layer.edits, rebuilt.file)
            rebuilt.size = rebuilt.file.tell()
            encoded = Decoded()
            src, start, end, cte, name = layer.owner
            encode(rebuilt, cte, encoded.file, name)
            encoded.size = encoded.file.tell()
            rebuilt.close()
            self.add(src, start, end, encoded)
        out = spool()
        splice(self.top, self._layers[id(self.top)].edits, out)
        out.seek(0)
        return out


def splice(src: Source, edits: list[tuple[int, int, bytes | Source]], sink: IO[bytes]) -> None:
    """Copy ``src`` to ``sink`` with each [start, end) replaced; an edit
    inside one already applied (a part inside a removed part) is skipped.
    One that begins inside an applied edit and ends beyond it (two readings
    of a structure whose parts overlap) is written too, after it: what
    either covers is gone."""
    pos = 0
    for start, end, new in sorted(edits, key=lambda e: (e[0], -e[1])):
        if end <= pos and start < pos:
            continue
        start = max(start, pos)
        for piece in chunks(src, pos, start):
            sink.write(piece)
        if isinstance(new, bytes):
            sink.write(new)
        else:
            for piece in chunks(new, 0, new.size):
                sink.write(piece)
        pos = end
    for piece in chunks(src, pos, src.size):
        sink.write(piece)
