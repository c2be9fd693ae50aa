"""End to end through a real Postfix: smtp-source -> Postfix (+ filter) -> smtp-sink.

    python3 -m bench.run --postfix-only            # this table alone (a few minutes)
    python3 -m bench.run --postfix                 # after the like-for-like table

One private Postfix per filter (tests/integration/mta.py: loopback ports,
its own queue, ``milter_protocol = 6``, Postfix's default macros), all
started before the first measurement, plus one without ``smtpd_milters``
for the no-filter rate. smtp-source sends ``MESSAGES`` messages of 4 KiB
over ``sessions`` parallel SMTP sessions, one message per session (its
default): Postfix's smtpd opens one milter connection per SMTP session.
The rate is messages accepted per second of smtp-source's run (Postfix
delivers to smtp-sink meanwhile, on the same machine, for every filter
alike). The filter's CPU per message is its process's user + system time
over that run divided by the messages.

Every run goes round all the filters in turn before the next run starts,
so a change in the machine's load falls on all of them; each figure is the
median of ``runs`` runs, with the spread, and ``% of no filter`` is the
ratio of the medians.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from .run import Filter, _children_cpu, cpu_seconds

MESSAGES = 2000
SESSIONS = (8, 32)


def _source(port: int, sessions: int, messages: int) -> float:
    """Run smtp-source; the seconds it took."""
    from tests.integration.mta import postfix_env, postfix_tool

    started = time.monotonic()
    subprocess.run(
        [
            postfix_tool("smtp-source"),
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-l",
            "4096",
            "-f",
            "sender@example.com",
            "-t",
            "rcpt@example.org",
            f"127.0.0.1:{port}",
        ],
        check=True,
        timeout=900,
        env=postfix_env(),
    )
    return time.monotonic() - started


def postfix_report(
    base: Path,
    filters: list[Filter],
    *,
    sessions: tuple[int, ...] = SESSIONS,
    runs: int = 3,
    messages: int = MESSAGES,
) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.integration.mta import Postfix, Sink, world_readable_tmpdir

    print()
    print(
        f"# Through real Postfix: smtp-source, 4 KiB messages, one per SMTP session, "
        f"{messages} per run; medians of {runs} runs (min-max); {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    rates: dict[tuple[str, int], list[float]] = {}
    cpus: dict[tuple[str, int], list[float]] = {}
    with ExitStack() as stack:
        tmp = stack.enter_context(world_readable_tmpdir())
        sink = Sink(tmp / "sink")
        stack.callback(sink.stop)
        rows: list[tuple[str, Filter | None, int]] = []
        none = Postfix(tmp / "pf-none", "inet:127.0.0.1:1", sink.port, extra="smtpd_milters =\n")
        stack.callback(none.stop)
        rows.append(("no filter", None, none.smtp_port))
        for i, f in enumerate(filters):
            f.start()
            stack.callback(f.stop)
            pf = Postfix(tmp / f"pf-{i}", f"inet:127.0.0.1:{f.port}", sink.port)
            stack.callback(pf.stop)
            rows.append((f.name, f, pf.smtp_port))
        for _ in range(runs):
            for n in sessions:
                for name, f, port in rows:
                    pid = f.proc.pid if f is not None and f.proc is not None else None
                    before = cpu_seconds(pid) + _children_cpu(pid) if pid else 0.0
                    seconds = _source(port, n, messages)
                    after = cpu_seconds(pid) + _children_cpu(pid) if pid else 0.0
                    rates.setdefault((name, n), []).append(messages / seconds)
                    cpus.setdefault((name, n), []).append((after - before) / messages * 1000)
        print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    print("| filter | SMTP sessions | msgs/s | % of no filter | filter CPU ms/msg |")
    print("|---|---|---|---|---|")
    for n in sessions:
        base_rate = statistics.median(rates[("no filter", n)])
        for name, f, _ in rows:
            r = rates[(name, n)]
            c = cpus[(name, n)]
            cpu = "" if f is None else f"{statistics.median(c):.2f}"
            print(
                f"| {name} | {n} | {statistics.median(r):.0f} ({min(r):.0f}-{max(r):.0f}) "
                f"| {statistics.median(r) / base_rate * 100:.0f} % | {cpu} |",
                flush=True,
            )
