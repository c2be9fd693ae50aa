"""Find the line of a key path in TOML text.

tomllib gives no positions for values, so this scans the text once for
``[table]``, ``[[array]]`` and ``key =`` lines and maps dotted key paths to
line numbers. Array indices (``listen[2]``) resolve to the key's line; a
path it cannot place falls back to its nearest known parent.
"""

from __future__ import annotations

import re

__all__ = ["LineIndex"]

_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")


def _parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in _PART.findall(dotted)]


class LineIndex:
    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        table: list[str] = []
        depth = 0  # inside a multi-line array or inline table
        for number, line in enumerate(text.splitlines(), start=1):
            if depth == 0:
                m = _TABLE.match(line)
                if m:
                    table = _parts(m.group(1))
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

    def line_of(self, path: str) -> int | None:
        path = re.sub(r"\[\d+\]", "", path)
        parts = path.split(".") if path else []
        while parts:
            found = self._lines.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return None
