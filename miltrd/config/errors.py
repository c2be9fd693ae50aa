"""Config problems, reported compiler-style: ``file:line: key.path: message``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Problem", "ConfigError"]


@dataclass(frozen=True)
class Problem:
    path: str  # key path, e.g. plugins.spf.policy.fail ("" for the file itself)
    message: str
    line: int | None = None
    file: str = ""

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The config cannot be used; carries every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
