"""``miltrd stats LOGFILE...``."""

from __future__ import annotations

import gzip
import sys

from ..logreport import Stats, parse_lines, report
from .exits import EXIT_USAGE

__all__ = ["stats_command"]


def stats_command(paths: list[str], top: int) -> int:
    stats = Stats()
    for path in paths:
        try:
            if path == "-":
                parse_lines(sys.stdin, stats)
            elif path.endswith(".gz"):
                with gzip.open(path, "rt", errors="replace") as f:
                    parse_lines(f, stats)
            else:
                with open(path, errors="replace") as f:
                    parse_lines(f, stats)
        except OSError as exc:
            print(f"miltrd stats: {path}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
    sys.stdout.write(report(stats, top))
    return 0
