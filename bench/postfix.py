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
over that run divided by the messages; Postfix's is the same for the
instance's master and every process under it (smtpd, cleanup, qmgr,
trivial-rewrite, smtp: those that exit count through the master's
children's times), and smtp-source's is its own.

Before the next row starts, Postfix must have delivered the row's messages
to the sink (so no row pays for the previous row's queue), and every row
first gets a short untimed warm-up run (Postfix spawns its smtpd processes,
the filter its first connections).

Every run goes round all the filters in turn before the next run starts,
so a change in the machine's load falls on all of them; each figure is the
median of ``runs`` runs, with the spread, and ``% of no filter`` is the
ratio of the medians.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from .run import TICKS, Filter, _children_cpu, cpu_seconds

MESSAGES = 2000
SESSIONS = (8, 32)


def _postfix_cpu(base: Path) -> float:
    """CPU seconds of one Postfix instance: its master (with the times of
    its children that exited) and the children alive now."""
    master = int((base / "queue" / "pid" / "master.pid").read_text().split()[0])
    fields = Path(f"/proc/{master}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / TICKS
    return total + _children_cpu(master)


def _sink_count(directory: Path) -> int:
    return sum(1 for _ in os.scandir(directory))


def _drain(directory: Path, count: int, timeout: float = 120.0) -> None:
    """Wait until the sink holds ``count`` messages (Postfix delivers on its own clock)."""
    deadline = time.monotonic() + timeout
    while _sink_count(directory) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Postfix delivered {_sink_count(directory)} of {count} messages")
        time.sleep(0.05)


def _source(port: int, sessions: int, messages: int) -> tuple[float, float]:
    """Run smtp-source; the seconds it took and its CPU seconds."""
    from tests.integration.mta import postfix_env, postfix_tool

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime


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
    postfix_cpus: dict[tuple[str, int], list[float]] = {}
    source_cpus: dict[tuple[str, int], list[float]] = {}
    sink_cpus: dict[tuple[str, int], list[float]] = {}
    with ExitStack() as stack:
        tmp = stack.enter_context(world_readable_tmpdir())
        sink = Sink(tmp / "sink")
        stack.callback(sink.stop)
        rows: list[tuple[str, Filter | None, Postfix]] = []
        none = Postfix(tmp / "pf-none", "inet:127.0.0.1:1", sink.port, extra="smtpd_milters =\n")
        stack.callback(none.stop)
        rows.append(("no filter", None, none))
        for i, f in enumerate(filters):
            f.start()
            stack.callback(f.stop)
            pf = Postfix(tmp / f"pf-{i}", f"inet:127.0.0.1:{f.port}", sink.port)
            stack.callback(pf.stop)
            rows.append((f.name, f, pf))
        delivered = 0
        for _name, _f, pf in rows:
            warm = 2 * max(sessions)
            _source(pf.smtp_port, max(sessions), warm)
            delivered += warm
            _drain(sink.directory, delivered)
        for _ in range(runs):
            for n in sessions:
                for name, f, pf in rows:
                    pid = f.proc.pid if f is not None and f.proc is not None else None
                    before = cpu_seconds(pid) + _children_cpu(pid) if pid else 0.0
                    pf_before = _postfix_cpu(pf.base)
                    sink_before = cpu_seconds(sink.proc.pid)
                    seconds, source_cpu = _source(pf.smtp_port, n, messages)
                    after = cpu_seconds(pid) + _children_cpu(pid) if pid else 0.0
                    delivered += messages
                    # The delivery to the sink is the row's own work, counted
                    # in its Postfix CPU, and must not spill into the next row.
                    _drain(sink.directory, delivered)
                    pf_after = _postfix_cpu(pf.base)
                    sink_cpus.setdefault((name, n), []).append(
                        (cpu_seconds(sink.proc.pid) - sink_before) / messages * 1000
                    )
                    rates.setdefault((name, n), []).append(messages / seconds)
                    cpus.setdefault((name, n), []).append((after - before) / messages * 1000)
                    postfix_cpus.setdefault((name, n), []).append(
                        (pf_after - pf_before) / messages * 1000
                    )
                    source_cpus.setdefault((name, n), []).append(source_cpu / messages * 1000)
        print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    print(
        "| filter | SMTP sessions | msgs/s | % of no filter | filter CPU ms/msg "
        "| Postfix CPU ms/msg | smtp-source + smtp-sink CPU ms/msg |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in sessions:
        base_rate = statistics.median(rates[("no filter", n)])
        for name, f, _pf in rows:
            r = rates[(name, n)]
            c = cpus[(name, n)]
            cpu = "" if f is None else f"{statistics.median(c):.2f}"
            print(
                f"| {name} | {n} | {statistics.median(r):.0f} ({min(r):.0f}-{max(r):.0f}) "
                f"| {statistics.median(r) / base_rate * 100:.0f} % | {cpu} "
                f"| {statistics.median(postfix_cpus[(name, n)]):.2f} "
                f"| {statistics.median(source_cpus[(name, n)]):.2f} "
                f"+ {statistics.median(sink_cpus[(name, n)]):.2f} |",
                flush=True,
            )
