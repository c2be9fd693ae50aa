"""End to end through a real Postfix: smtp-source -> Postfix (+ filter) -> smtp-sink."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .run import Filter

MESSAGES = 2000
SESSIONS = 8


def _run_one(base: Path, label: str, milter: str) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.integration.mta import (
        Postfix,
        Sink,
        postfix_env,
        postfix_tool,
        world_readable_tmpdir,
    )

    with world_readable_tmpdir() as tmp:
        sink = Sink(tmp / "sink")
        extra = "" if milter else "smtpd_milters =\n"
        postfix = Postfix(tmp / "pf", milter or "inet:127.0.0.1:1", sink.port, extra=extra)
        try:
            started = time.monotonic()
            subprocess.run(
                [
                    postfix_tool("smtp-source"),
                    "-s",
                    str(SESSIONS),
                    "-m",
                    str(MESSAGES),
                    "-l",
                    "4096",
                    "-f",
                    "sender@example.com",
                    "-t",
                    "rcpt@example.org",
                    f"127.0.0.1:{postfix.smtp_port}",
                ],
                check=True,
                timeout=600,
                env=postfix_env(),
            )
            accepted = time.monotonic() - started
        finally:
            postfix.stop()
            sink.stop()
    rate = MESSAGES / accepted
    print(f"| {label} | {SESSIONS} | {MESSAGES} | {rate:.0f} |", flush=True)
    return rate


def postfix_report(base: Path, filters: list[Filter]) -> None:
    print()
    print("Through real Postfix (smtp-source, 4 KiB messages, accepted msgs/s):")
    print("| filter | SMTP sessions | messages | msgs/s |")
    print("|---|---|---|---|")
    _run_one(base, "no filter", "")
    for f in filters:
        f.start()
        try:
            _run_one(base, f.name, f"inet:127.0.0.1:{f.port}")
        finally:
            f.stop()
