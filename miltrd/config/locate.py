"""Find the line of a key path in TOML text.

tomllib gives no positions for values, so this scans the text once for
``[table]``, ``[[array]]`` and ``key =`` lines and maps key paths to line
numbers. Each ``[[array]]`` entry is its own place: the key path
``plugins.bcc.rules[1].copy_to`` is the ``copy_to`` of the second
``[[plugins.bcc.rules]]`` block, and a table or array of tables inside an
entry (``[plugins.x.rules.when]`` after the second ``[[plugins.x.rules]]``)
belongs to that entry, as in TOML itself. An index into a value's list
(``listen[2]``) resolves to the key's line; a path it cannot place falls
back to its nearest known parent.
"""

from __future__ import annotations

import re

__all__ = ["LineIndex"]

_TABLE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")
_INDEX = re.compile(r"\[\d+\]\Z")


def _parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(dotted)]


class LineIndex:
    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        # Arrays of tables, by their path with the entries' indices (as in
        # "a.b[1].c"): how many entries each has had so far.
        self._entries: dict[str, int] = {}
        table: list[str] = []
        depth = 0  # inside a multi-line array or inline table
        for number, line in enumerate(text.splitlines(), start=1):
            if depth == 0:
                m = _TABLE.match(line)
                if m:
                    table = self._table(_parts(m.group(2)), is_array=m.group(1) == "[[")
                    self._lines.setdefault(".".join(table), number)
                    continue
                m = _KEY.match(line)
                if m:
                    path = ".".join([*table, *_parts(m.group(1))])
                    self._lines.setdefault(path, number)
            code = re.sub(r"""("[^"]*"|'[^']*')""", "", line).split("#", 1)[0]
            depth = max(
                0, depth + code.count("[") + code.count("{") - code.count("]") - code.count("}")
            )

    def _table(self, parts: list[str], *, is_array: bool) -> list[str]:
        """A header's key parts with the entry index after each array of
        tables it lies in (the latest entry), and after its own if it is
        a ``[[header]]``."""
        resolved: list[str] = []
        for i, part in enumerate(parts):
            resolved.append(part)
            here = ".".join(resolved)
            if is_array and i == len(parts) - 1:
                self._entries[here] = self._entries.get(here, 0) + 1
            count = self._entries.get(here)
            if count is not None:
                resolved[-1] = f"{part}[{count - 1}]"
        return resolved

    def line_of(self, path: str) -> int | None:
        """The line of key path ``path`` ("a.b[1].c[0]"), or of its nearest
        known parent; None if not even its first part is in the text."""
        parts = path.split(".") if path else []
        while parts:
            found = self._lines.get(".".join(parts))
            if found is not None:
                return found
            last = _INDEX.sub("", parts[-1])
            if last != parts[-1]:
                parts[-1] = last  # an index into the key's list: the key's line
            else:
                parts.pop()
        return None
