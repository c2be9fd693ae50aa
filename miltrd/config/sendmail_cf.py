"""Read what miltrd needs from a sendmail.cf (like PMilter's auto_setconn).

- ``filter_socket(text, name)``: the ``S=`` socket of filter ``name``, from
  its ``X`` line (which Sendmail's ``INPUT_MAIL_FILTER`` produces);
- ``class_members(text, name)``: the words of a class such as ``w`` (local
  host names) from ``Cw...`` lines and ``Fw`` files (``-o``: optional).
  Program classes (``F|...``) are never run.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["SendmailCfError", "filter_socket", "class_members", "read_cf"]


class SendmailCfError(ValueError):
    pass


def read_cf(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SendmailCfError(f"cannot read {path}: {exc.strerror or exc}") from None


def filter_socket(text: str, name: str) -> str:
    """The S= value of the X line for ``name``; SendmailCfError if absent."""
    for line in text.splitlines():
        if not line.startswith("X"):
            continue
        fname, _, rest = line[1:].partition(",")
        if fname.strip() != name:
            continue
        for field in rest.split(","):
            key, _, value = field.strip().partition("=")
            if key.strip() == "S" and value.strip():
                return value.strip()
        raise SendmailCfError(f"filter {name} has no S= socket in its X line")
    raise SendmailCfError(f"no mail filter named {name} (no X{name} line)")


def _class_prefix(line: str, kind: str, name: str) -> str | None:
    """The rest of a C/F line for class ``name``, or None."""
    if not line.startswith(kind):
        return None
    rest = line[1:]
    if len(name) == 1 and rest.startswith(name):
        return rest[1:]
    braced = "{" + name + "}"
    if rest.startswith(braced):
        return rest[len(braced) :]
    return None


def class_members(text: str, name: str) -> list[str]:
    """The members of class ``name`` in order, without duplicates."""
    members: list[str] = []
    for line in text.splitlines():
        rest = _class_prefix(line, "C", name)
        if rest is not None:
            members.extend(rest.split())
            continue
        rest = _class_prefix(line, "F", name)
        if rest is None:
            continue
        rest = rest.strip()
        if rest.startswith("|"):
            continue  # a program: not run
        optional = False
        if rest.startswith("-o"):
            optional, rest = True, rest[2:].strip()
        path = re.split(r"\s", rest, maxsplit=1)[0]
        try:
            content = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            if optional:
                continue
            raise SendmailCfError(f"class {name}: cannot read {path}: {exc.strerror}") from None
        for entry in content.splitlines():
            members.extend(entry.split("#", 1)[0].split())
    seen: set[str] = set()
    return [m for m in members if not (m.lower() in seen or seen.add(m.lower()))]  # type: ignore[func-returns-value]
