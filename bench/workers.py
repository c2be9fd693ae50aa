"""``workers = 1`` against ``workers = 2``, side by side in one run.

    python3 -m bench.run --workers                       # 8 and 64 conns, 1 and 10 msgs/conn
    python3 -m bench.run --workers --runs 5 --seconds 3
    python3 -m bench.run --workers --compare-tree ../before   # bursts on another checkout too

The same miltrd plugin (bench/benchplugin.py ``Declared`` and ``Reference``)
is started twice, once per worker count, and the Postfix-shaped generator
(bench/postfixgen.py: a new milter connection per SMTP session of 1 or 10
messages, Postfix's macros, quick ACKs) drives each in turn, cell by cell,
the workers = 1 and workers = 2 daemons alternating so that the load other
programs put on the machine falls on both alike. Each cell is run
``--runs`` times; the table gives medians.

The generator runs in ``--gen-procs`` processes (connections split evenly
among them), so that one Python process's single core does not cap the
rate. It shares the machine's cores with miltrd: its CPU per message is
measured (user + system time of its processes over the measured part) and
reported, with the cores miltrd and the generator kept busy (msgs/s times
CPU per message). With F the daemon's CPU per message and G the
generator's, two workers on two cores can at most reach 2 / (F + G)
messages per second against one worker's 1 / F: a ratio of at most
2F / (F + G), whatever miltrd does. Per worker, the share of the daemon's
CPU each worker used tells whether the accepts were balanced.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cgen
from .cgen import run_c_generator
from .postfixgen import Result, run_postfix_like
from .run import REFERENCE_CHAIN, Filter, cpu_seconds, miltrd_filter


def _children(pid: int) -> list[int]:
    out = []
    for child in Path("/proc").glob("[0-9]*"):
        try:
            stat = (child / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(child.name))
    return sorted(out)


def _cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (OSError, IndexError):
        return 0.0


def _generate(args: tuple[int, int, int, int, float]) -> tuple[Result, float, float]:
    port, conns, size, per, seconds = args
    start = time.process_time()
    result, wall, _ = asyncio.run(
        run_postfix_like(
            "127.0.0.1", port, connections=conns, size=size, per_connection=per, seconds=seconds
        )
    )
    return result, wall, time.process_time() - start


@dataclass
class Cell:
    rates: list[float] = field(default_factory=list)
    daemon_cpu: list[float] = field(default_factory=list)  # ms per message
    gen_cpu: list[float] = field(default_factory=list)  # ms per message
    shares: list[list[float]] = field(default_factory=list)  # per worker, fraction of CPU
    errors: int = 0


def measure(
    f: Filter, pool: Any, procs: int, conns: int, size: int, per: int, seconds: float
) -> tuple[float, float, float, list[float], int]:
    """One run of one cell: (msgs/s, daemon CPU ms/msg, generator CPU ms/msg,
    each worker's share of the daemon's CPU, errors). With ``pool`` None the
    C client (bench/cgen.c) runs every connection, in threads of one process."""
    assert f.proc is not None
    workers = _children(f.proc.pid)
    before = {pid: _cpu(pid) for pid in [f.proc.pid, *workers]}
    if pool is None:
        results = [
            run_c_generator(
                f.port, connections=conns, size=size, per_connection=per, seconds=seconds
            )
        ]
    else:
        split = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
        jobs = [(f.port, n, size, per, seconds) for n in split if n]
        results = pool.map(_generate, jobs)
    after = {pid: _cpu(pid) for pid in before}
    used = {pid: after[pid] - before[pid] for pid in before}
    messages = sum(r.messages for r, _, _ in results)
    total = max(sum(r.total for r, _, _ in results), 1)
    wall = max(w for _, w, _ in results)
    # Each generator's CPU covers its warm-up too: spread it over every
    # message it sent, warm-up included, as the daemon's is.
    gen = sum(c for _, _, c in results)
    daemon = sum(used.values())
    shares = [used[pid] / daemon if daemon else 0.0 for pid in workers]
    errors = sum(r.errors for r, _, _ in results)
    return messages / wall, daemon / total * 1000, gen / total * 1000, shares, errors


def _per_worker(port: int) -> list[int]:
    """Established connections to ``port``, counted per process (ss -tnp)."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
    ).stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        # A socket is listed once, with every (process, fd) holding it.
        for pid in set(re.findall(r"pid=(\d+)", line)):
            counts[pid] = counts.get(pid, 0) + 1
    return sorted(counts.values(), reverse=True)


async def _burst(port: int, n: int) -> list[int]:
    conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(n)))
    await asyncio.sleep(0.5)  # every one accepted
    counts = _per_worker(port)
    for _, writer in conns:
        writer.close()
    await asyncio.sleep(0.3)
    return counts


def burst_report(f: Filter, sizes: list[int], tries: int) -> None:
    """Open N connections at once, ``tries`` times: how the workers split them."""
    if shutil.which("ss") is None:
        print("# accept balance: ss (iproute2) is not installed: left out")
        return
    for n in sizes:
        splits = [asyncio.run(_burst(f.port, n)) for _ in range(tries)]
        text = ", ".join("/".join(str(c) for c in split) for split in splits)
        one = sum(1 for split in splits if split[0] >= 0.8 * n)
        print(
            f"# accept balance, {f.name}: {n} connections opened at once, {tries} tries: "
            f"{text} (one worker took 80 % or more in {one} of {tries})"
        )


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def workers_report(tmp: Path, args: Any) -> int:
    classes = args.workers_plugins.split(",")
    conns = [int(c) for c in args.conns.split(",")]
    sessions = [int(m) for m in args.per_connection.split(",")]
    size = int(args.sizes.split(",")[0])
    counts = [int(w) for w in args.workers_counts.split(",")]
    filters: dict[tuple[str, int], Filter] = {}
    for cls in classes:
        for n in counts:
            filters[cls, n] = miltrd_filter(
                f"miltrd {cls} workers={n}", REFERENCE_CHAIN.format(cls=cls), tmp, workers=n
            )
    use_c = cgen.chosen(args.generator)
    where = (
        "the C client (bench/cgen.c), one process"
        if use_c
        else f"bench/postfixgen.py in {args.gen_procs} process(es)"
    )
    print(
        f"# workers scaling: {os.cpu_count()} CPUs, {args.seconds:g} s per run, "
        f"{args.runs} runs per cell (medians), generator: {where}, "
        f"{size // 1024} KiB, load average at start {_load()}"
    )
    cells: dict[tuple[str, int, int, int], Cell] = {}
    ctx = multiprocessing.get_context("fork")
    try:
        for f in filters.values():
            f.start()
        time.sleep(1.0)  # every worker forked and listening
        with contextlib.nullcontext(None) if use_c else ctx.Pool(args.gen_procs) as pool:
            for cls in classes:
                for per in sessions:
                    for c in conns:
                        for _ in range(args.runs):
                            for n in counts:
                                f = filters[cls, n]
                                rate, dcpu, gcpu, shares, errors = measure(
                                    f, pool, args.gen_procs, c, size, per, args.seconds
                                )
                                cell = cells.setdefault((cls, per, c, n), Cell())
                                cell.rates.append(rate)
                                cell.daemon_cpu.append(dcpu)
                                cell.gen_cpu.append(gcpu)
                                cell.shares.append(shares)
                                cell.errors += errors
        for (cls, n), f in filters.items():
            if n > 1 and cls == classes[0]:
                burst_report(f, [8, 64], args.burst_tries)
        if args.compare_tree:
            # The same bursts on another checkout (say, before a change).
            tree = Path(args.compare_tree).resolve()
            label = args.compare_label or tree.name
            other = miltrd_filter(
                f"miltrd {classes[0]} workers={max(counts)} @{label}",
                REFERENCE_CHAIN.format(cls=classes[0]),
                tmp,
                workers=max(counts),
                tree=tree,
            )
            filters["@" + label, max(counts)] = other
            other.start()
            time.sleep(1.0)
            burst_report(other, [8, 64], args.burst_tries)
    finally:
        for f in filters.values():
            f.stop()
    print(f"# load average at end {_load()}")
    base = counts[0]
    print(
        "| plugin | msgs per conn | conns | workers | msgs/s (runs) | ratio to "
        f"workers={base} | miltrd CPU ms/msg (F) | generator CPU ms/msg (G) "
        "| cores busy: miltrd + generator | bound 2F/(F+G) | CPU share per worker |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for cls in classes:
        for per in sessions:
            for c in conns:
                ref = statistics.median(cells[cls, per, c, base].rates)
                for n in counts:
                    cell = cells[cls, per, c, n]
                    rate = statistics.median(cell.rates)
                    dcpu = statistics.median(cell.daemon_cpu)
                    gcpu = statistics.median(cell.gen_cpu)
                    bound = 2 * dcpu / (dcpu + gcpu)
                    widest = max(len(s) for s in cell.shares)
                    share = (
                        " / ".join(
                            f"{statistics.median(s[i] for s in cell.shares if len(s) > i):.0%}"
                            for i in range(widest)
                        )
                        or "(one process)"
                    )
                    busy = f"{rate * dcpu / 1000:.2f} + {rate * gcpu / 1000:.2f}"
                    runs = ", ".join(f"{r:.0f}" for r in cell.rates)
                    err = f" ({cell.errors} errors)" if cell.errors else ""
                    print(
                        f"| {cls} | {per or 'endless'} | {c} | {n} | {rate:.0f} ({runs}){err} "
                        f"| {rate / ref:.2f} | {dcpu:.2f} | {gcpu:.2f} | {busy} "
                        f"| {bound:.2f} | {share} |",
                        flush=True,
                    )
    return 0
