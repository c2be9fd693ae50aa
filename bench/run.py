"""miltrd against the libmilter-based filters, side by side in one run.

    python3 -m bench.run                 # like for like, Postfix-shaped (a few minutes)
    python3 -m bench.run --quick         # shorter runs, fewer cells
    python3 -m bench.run --endless       # the older table: endless connections, no macros
    python3 -m bench.run --postfix       # also end to end through real Postfix
    python3 -m bench.run --postfix-only  # only that: 8 and 32 SMTP sessions (bench/postfix.py)
    python3 -m bench.run --memory        # idle-connection and large-message memory
    python3 -m bench.run --stall         # small-message latency beside 50 MiB defangs
    python3 -m bench.run --mixed         # small-message latency beside 256 KiB/10 MiB senders
    python3 -m bench.run --workers       # workers = 1 against workers = 2 (bench/workers.py)

Every filter does the same work: observe every phase, add one header at end
of message. The default table is like for like: the generator behaves like
Postfix (bench/postfixgen.py: Postfix's macros at each stage, a new milter
connection per SMTP session of 1 or 10 messages, and long-lived sessions
beside them, quick ACKs), and each filter is run both ways it can be written:
a reply per callback (C libmilter, pymilter, miltrd ``Reference``) and
no-reply everywhere but end of message (pymilter ``@Milter.noreply``, miltrd
``Declared``). Each runs as its own process on loopback TCP; the generator
(bench/loadgen.py) is this process, and its CPU is reported so one can see
it is not the bottleneck. CPU per message is the filter process's user +
system time divided by the messages it served.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .loadgen import run_load

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"filter on port {port} did not start") from None
            time.sleep(0.05)


def user_system(pid: int) -> tuple[float, float]:
    """(utime, stime) CPU seconds of a process, its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children threads."""
    user, system = user_system(pid)
    return user + system


@dataclass
class Filter:
    name: str
    argv: list[str]
    port: int
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    # `python -m miltrd` imports from the working directory first: another
    # checkout's miltrd must run from that checkout.
    cwd: Path = REPO

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.cwd,
        )
        wait_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def miltrd_filter(name: str, chain: str, tmp: Path, workers: int = 1, tree: Path = REPO) -> Filter:
    port = free_port()
    cfg = tmp / f"{name.replace(' ', '-')}.toml"
    cfg.write_text(
        f'[daemon]\nlisten = ["inet:{port}@127.0.0.1"]\nlog_level = "warning"\n'
        f"workers = {workers}\nmax_connections = 2048\n{chain}"
    )
    env = dict(os.environ, PYTHONPATH=str(tree))
    return Filter(
        name, [sys.executable, "-m", "miltrd", "run", "-c", str(cfg)], port, env, cwd=tree
    )


REFERENCE_CHAIN = '[chain]\nplugins = ["ref"]\n[plugins.ref]\nuse = "bench.benchplugin:{cls}"\n'


def compare_filters(tmp: Path, tree: Path, label: str) -> list[Filter]:
    """miltrd ``Reference`` and ``Declared`` from another checkout ``tree``
    (say, before a change), named "miltrd CLS @label": ``--compare-tree``."""
    tree = tree.resolve()
    return [
        miltrd_filter(f"miltrd {cls} @{label}", REFERENCE_CHAIN.format(cls=cls), tmp, tree=tree)
        for cls in ("Reference", "Declared")
    ]


SAMPLE_CHAIN = (REPO / "etc" / "miltrd.toml").read_text().split("[chain]", 1)[1]
# The shipped chain (zombie, spf, bcc) sees an internal client sending
# outgoing mail from one of our domains: zombie checks, spf skips. Both
# client addresses are internal: Postfix's own (loopback) and the one
# bench/postfixgen.py's sessions announce (CLIENT_ADDR, 192.0.2.10);
# without the second, spf would look the sender up in the machine's DNS.
SAMPLE_INTERNAL = (
    '[internal]\nnetworks = ["127.0.0.0/8", "192.0.2.0/24"]\ndomains = ["example.com"]\n'
)


# The yardsticks of bench/pyfloor.py: --filters name, its options, label.
# Not filters: pure Python's least work per packet on the same wire as
# miltrd Reference / Declared, without and with miltrd's protocol engine,
# and with the plugin's hooks.
FLOORS = (
    ("pyfloor", (), "python floor"),
    ("pyfloor-nr", ("--noreply",), "python floor noreply"),
    ("enginefloor", ("--engine",), "engine floor"),
    ("enginefloor-nr", ("--engine", "--noreply"), "engine floor noreply"),
    ("hooksfloor", ("--hooks",), "hooks floor"),
    ("hooksfloor-nr", ("--hooks", "--noreply"), "hooks floor noreply"),
)
# Every name --filters takes (bench.run, bench.cpusplit, bench.instructions).
FILTER_NAMES = (
    "c",
    "pymilter",
    "pymilter-nr",
    "pymilter-layer",
    "pymilter-layer-nr",
    "miltrd",
    "declared",
    "sample",
    "ppm",
    "floor",
    *(name for name, _options, _label in FLOORS),
)
FILTERS_HELP = (
    f"comma-separated, any of {', '.join(FILTER_NAMES)} (miltrd: Reference and Declared; "
    "sample: the shipped chain; floor: C, end of message only; pyfloor, enginefloor, "
    "hooksfloor: bench/pyfloor.py)"
)


def make_filters(tmp: Path, which: set[str]) -> list[Filter]:
    """The filters named in ``which`` (of FILTER_NAMES), ready to start.

    An unknown name is reported on stdout and left out."""
    unknown = which - set(FILTER_NAMES)
    if unknown:
        print(f"# unknown filter name(s) left out: {', '.join(sorted(unknown))}")
    filters: list[Filter] = []
    if "miltrd" in which:
        filters.append(
            miltrd_filter("miltrd Reference", REFERENCE_CHAIN.format(cls="Reference"), tmp)
        )
    if which & {"miltrd", "declared"}:
        filters.append(
            miltrd_filter("miltrd Declared", REFERENCE_CHAIN.format(cls="Declared"), tmp)
        )
    if "sample" in which:
        filters.append(
            miltrd_filter("miltrd-sample", SAMPLE_INTERNAL + "[chain]" + SAMPLE_CHAIN, tmp)
        )
    if which & {"pymilter", "pymilter-nr"} and not _importable("Milter"):
        print("# pymilter is not installed (pip install -e '.[bench]'): left out")
        which = which - {"pymilter", "pymilter-nr"}
    if "ppm" in which and not _importable("purepythonmilter"):
        print("# purepythonmilter is not installed (pip install -e '.[bench]'): left out")
        which = which - {"ppm"}
    if "pymilter" in which:
        port = free_port()
        filters.append(
            Filter(
                "pymilter",
                [sys.executable, str(HERE / "pymilter_ref.py"), f"inet:{port}@127.0.0.1"],
                port,
            )
        )
    if "pymilter-nr" in which:
        port = free_port()
        argv = [sys.executable, str(HERE / "pymilter_ref.py"), f"inet:{port}@127.0.0.1"]
        filters.append(Filter("pymilter-noreply", [*argv, "--noreply"], port))
    # The same pymilter_ref.py, unchanged, on miltrd's compatibility layer
    # (no C libmilter): `miltrd pymilter`.
    layer_env = dict(os.environ, PYTHONPATH=str(REPO))
    layer_variants = (
        ("pymilter-layer", [], [], ""),
        ("pymilter-layer-nr", [], ["--noreply"], " noreply"),
    )
    for name, opts, extra, label in layer_variants:
        if name in which:
            port = free_port()
            argv = [sys.executable, "-m", "miltrd", "pymilter", "--log-level", "warning", *opts]
            argv += [str(HERE / "pymilter_ref.py"), f"inet:{port}@127.0.0.1", *extra]
            filters.append(Filter(f"pymilter on miltrd{label}", argv, port, layer_env))
    if "ppm" in which:
        port = free_port()
        filters.append(
            Filter("purepythonmilter", [sys.executable, str(HERE / "ppm_ref.py"), str(port)], port)
        )
    for name, options, label in FLOORS:
        if name in which:
            port = free_port()
            argv = [sys.executable, str(HERE / "pyfloor.py"), str(port), *options]
            filters.append(Filter(label, argv, port, dict(os.environ, PYTHONPATH=str(REPO))))
    if "floor" in which and shutil.which("gcc"):
        # Not a peer: the least milter work Postfix can be asked for
        # (bench/cfloor.c), the bound under every filter's rate.
        exe = tmp / "cfloor"
        built = subprocess.run(
            ["gcc", "-O2", "-o", str(exe), str(HERE / "cfloor.c"), "-lpthread"],
            capture_output=True,
        )
        if built.returncode == 0:
            port = free_port()
            filters.append(Filter("floor (C, EOM only)", [str(exe), str(port)], port))
    if "c" in which and shutil.which("gcc"):
        exe = tmp / "cfilter"
        built = subprocess.run(
            ["gcc", "-O2", "-o", str(exe), str(HERE / "cfilter.c"), "-lmilter", "-lpthread"],
            capture_output=True,
        )
        if built.returncode == 0:
            port = free_port()
            filters.append(Filter("C libmilter", [str(exe), f"inet:{port}@127.0.0.1"], port))
    return filters


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _measure(f: Filter, load: Coroutine[Any, Any, tuple[Any, float, float]]) -> dict[str, float]:
    """Run one generator ``load`` against filter ``f``; its figures per message.

    CPU per message divides the filter's CPU over the whole cell by every
    message it served (``total`` where the generator counts warm-up
    messages apart, else ``messages``)."""
    assert f.proc is not None
    before = cpu_seconds(f.proc.pid) + _children_cpu(f.proc.pid)
    result, wall, gen_cpu = asyncio.run(load)
    after = cpu_seconds(f.proc.pid) + _children_cpu(f.proc.pid)
    served = max(getattr(result, "total", result.messages), 1)
    return {
        "rate": result.messages / wall,
        "p50": percentile(result.latencies, 0.5) * 1000,
        "p99": percentile(result.latencies, 0.99) * 1000,
        "cpu_ms": (after - before) / served * 1000,
        "gen_ms": gen_cpu / served * 1000,
        "errors": result.errors,
    }


def bench_cell(
    f: Filter, conns: int, size: int, quickack: bool, seconds: float
) -> dict[str, float]:
    """One cell of the older table (bench/loadgen.py: endless connections)."""
    return _measure(
        f,
        run_load(
            "127.0.0.1", f.port, connections=conns, size=size, quickack=quickack, seconds=seconds
        ),
    )


def like_cell(
    f: Filter, conns: int, size: int, per_connection: int, seconds: float, c: bool = False
) -> dict[str, float]:
    """One cell of the like-for-like table (bench/postfixgen.py; with ``c``,
    the same sessions from bench/cgen.c)."""
    from .postfixgen import run_postfix_like

    if c:
        from .cgen import run_c_generator

        load = asyncio.to_thread(
            run_c_generator,
            f.port,
            connections=conns,
            size=size,
            per_connection=per_connection,
            seconds=seconds,
        )
        return _measure(f, load)
    return _measure(
        f,
        run_postfix_like(
            "127.0.0.1",
            f.port,
            connections=conns,
            size=size,
            per_connection=per_connection,
            seconds=seconds,
        ),
    )


LIKE_FILTERS = "c,pymilter,pymilter-nr,pymilter-layer,pymilter-layer-nr,miltrd"
# Through Postfix: miltrd with the shipped chain, and the reference work
# (observe every phase, add a header) done by miltrd (``Declared``, as a
# miltrd plugin is meant to be written) and by every peer.
POSTFIX_FILTERS = "sample,declared,pymilter,pymilter-nr,c"


def postfix_filters(tmp: Path, which: str) -> list[Filter]:
    """make_filters for the Postfix table: the shipped chain is named as such."""
    filters = make_filters(tmp, set(which.split(",")))
    for f in filters:
        if f.name == "miltrd-sample":
            f.name = "miltrd, shipped chain"
    return filters


def like_for_like(tmp: Path, args: argparse.Namespace) -> None:
    filters = make_filters(tmp, set(args.filters.split(",")))
    if args.compare_tree:
        # The same work on another checkout of miltrd (say, before a change),
        # in the same run: a before/after comparison on one machine at once.
        tree = Path(args.compare_tree)
        filters += compare_filters(tmp, tree, args.compare_label or tree.resolve().name)
    conns = [int(c) for c in args.conns.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    sessions = [int(m) for m in args.per_connection.split(",")]
    from . import cgen

    c = cgen.chosen(args.generator)
    print(
        f"# like for like: {os.cpu_count()} CPUs, {args.seconds:g} s per cell, Postfix-shaped "
        "generator (macros, a milter connection per SMTP session, quick ACKs): "
        + ("bench/cgen.c" if c else "bench/postfixgen.py")
    )
    print(
        "| filter | size | msgs per conn | conns | msgs/s | p50 ms | p99 ms "
        "| filter CPU ms/msg | generator CPU ms/msg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        for f in filters:
            f.start()
        for size in sizes:
            for per in sessions:
                for n in conns:
                    for f in filters:
                        r = like_cell(f, n, size, per, args.seconds, c)
                        err = f" ({int(r['errors'])} errors)" if r["errors"] else ""
                        print(
                            f"| {f.name} | {size // 1024} KiB | {per or 'endless'} | {n} "
                            f"| {r['rate']:.0f}{err} | {r['p50']:.2f} | {r['p99']:.2f} "
                            f"| {r['cpu_ms']:.2f} | {r['gen_ms']:.2f} |",
                            flush=True,
                        )
    finally:
        for f in filters:
            f.stop()


def _children_cpu(pid: int) -> float:
    total = 0.0
    for child in Path("/proc").glob("[0-9]*"):
        try:
            stat = (child / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            total += cpu_seconds(int(child.name))
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="1 s per cell, 4 KiB only")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--filters", default=None, help=f"default {LIKE_FILTERS}; {FILTERS_HELP}")
    parser.add_argument(
        "--per-connection",
        default="1,10,0",
        help="messages per milter connection (0: one endless connection)",
    )
    parser.add_argument(
        "--compare-tree",
        metavar="DIR",
        help="also run miltrd Reference/Declared from another checkout (e.g. before a change)",
    )
    parser.add_argument("--compare-label", help="the name of --compare-tree in the table")
    parser.add_argument(
        "--endless",
        action="store_true",
        help="the older table: endless connections, no macros (filters miltrd,sample,pymilter,ppm,c)",
    )
    parser.add_argument("--conns", default="1,8,64")
    parser.add_argument("--sizes", default="4096,262144")
    parser.add_argument("--postfix", action="store_true", help="also run through real Postfix")
    parser.add_argument(
        "--postfix-only", action="store_true", help="only the table through real Postfix"
    )
    parser.add_argument(
        "--messages", type=int, default=2000, help="--postfix: messages per smtp-source run"
    )
    parser.add_argument("--memory", action="store_true", help="memory measurements only")
    parser.add_argument(
        "--stall", action="store_true", help="small-message latency beside 50 MiB defangs"
    )
    parser.add_argument(
        "--mixed",
        action="store_true",
        help="small-message reply latency beside 256 KiB and 10 MiB senders (bench/mixed.py)",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="--mixed, --postfix, --workers: runs of each cell"
    )
    parser.add_argument(
        "--large-nice", type=int, default=0, help="--mixed: the large senders' nice value"
    )
    parser.add_argument(
        "--workers",
        dest="workers_mode",
        action="store_true",
        help="workers = 1 against workers = 2, Postfix-shaped (bench/workers.py)",
    )
    parser.add_argument("--workers-counts", default="1,2", help="--workers: the worker counts")
    parser.add_argument(
        "--workers-plugins", default="Declared,Reference", help="--workers: benchplugin classes"
    )
    parser.add_argument(
        "--burst-tries", type=int, default=10, help="--workers: accept-balance bursts"
    )
    parser.add_argument(
        "--gen-procs", type=int, default=2, help="--workers --generator python: its processes"
    )
    parser.add_argument(
        "--generator",
        choices=("c", "python"),
        default="c",
        help="the default table, --workers, --mixed (its large senders): the Postfix-shaped "
        "client, bench/cgen.c "
        "(where gcc builds it; about a fifth of the CPU per message) or bench/postfixgen.py",
    )
    parser.add_argument("--repo", type=Path, default=REPO, help="--stall: the code to run")
    parser.add_argument("--python", default=sys.executable, help="--stall: the interpreter")
    parser.add_argument("--small-conns", type=int, default=4, help="--stall: small connections")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.sizes = 1.0, "4096"
    tmp = Path(tempfile.mkdtemp(prefix="miltrd-bench-"))
    try:
        return _run_mode(tmp, args, argv)
    finally:  # the configs, sockets and built programs of every mode
        shutil.rmtree(tmp, ignore_errors=True)


def _run_mode(tmp: Path, args: argparse.Namespace, argv: list[str] | None) -> int:
    """The mode the options ask for, with ``tmp`` for its files."""
    if args.memory:
        from .memory import memory_report

        return memory_report(tmp)
    if args.workers_mode:
        from .workers import workers_report

        if args.conns == "1,8,64":
            args.conns = "8,64"
        if args.per_connection == "1,10,0":
            args.per_connection = "1,10"
        return workers_report(tmp, args)
    if args.postfix_only:
        from .postfix import postfix_report

        postfix_report(
            tmp,
            postfix_filters(tmp, args.filters or POSTFIX_FILTERS),
            runs=args.runs,
            messages=args.messages,
        )
        return 0
    if args.mixed:
        from .mixed import mixed_report

        trees = [("this", REPO)]
        if args.compare_tree:
            tree = Path(args.compare_tree).resolve()
            trees.append((args.compare_label or tree.name, tree))
        seconds = args.seconds if "--seconds" in (argv or sys.argv) else 8.0
        return mixed_report(
            tmp, seconds, args.runs, args.small_conns, trees, args.large_nice, args.generator
        )
    if args.stall:
        from .bigmail import stall_report

        return stall_report(tmp, args.repo, args.python, max(args.seconds, 20.0), args.small_conns)
    if not args.endless:
        args.filters = args.filters or LIKE_FILTERS
        like_for_like(tmp, args)
        if args.postfix:
            from .postfix import postfix_report

            postfix_report(
                tmp, postfix_filters(tmp, POSTFIX_FILTERS), runs=args.runs, messages=args.messages
            )
        return 0
    args.filters = args.filters or "miltrd,sample,pymilter,ppm,c"
    filters = make_filters(tmp, set(args.filters.split(",")))
    conns = [int(c) for c in args.conns.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# miltrd benchmark: {os.cpu_count()} CPUs, {args.seconds:g} s per cell")
    print(
        "| filter | MTA ACKs | size | conns | msgs/s | p50 ms | p99 ms "
        "| filter CPU ms/msg | generator CPU ms/msg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        for f in filters:
            f.start()
        for quickack in (False, True):
            for size in sizes:
                for c in conns:
                    for f in filters:
                        r = bench_cell(f, c, size, quickack, args.seconds)
                        err = f" ({int(r['errors'])} errors)" if r["errors"] else ""
                        print(
                            f"| {f.name} | {'quick' if quickack else 'delayed'} "
                            f"| {size // 1024} KiB "
                            f"| {c} | {r['rate']:.0f}{err} | {r['p50']:.2f} | {r['p99']:.2f} "
                            f"| {r['cpu_ms']:.2f} | {r['gen_ms']:.2f} |",
                            flush=True,
                        )
    finally:
        for f in filters:
            f.stop()
    if args.postfix:
        from .postfix import postfix_report

        postfix_report(
            tmp, postfix_filters(tmp, POSTFIX_FILTERS), runs=args.runs, messages=args.messages
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
