"""How long the event loop waits while defang walks a 50 MiB message in a
worker thread, in one process, without the network.

    python3 -m bench.looplag                         # the code of this checkout
    python3 -m bench.looplag --repo DIR              # another checkout (miltrd/plugins linked)
    python3 -m bench.looplag --switch-interval 5     # CPython's default instead of miltrd's

A task on the loop sleeps 1 ms over and over while ``Defang._work`` (the
whole end-of-message walk: parse, judge, save, rewrite) runs on a 50.6 MiB
message (one ``setup.exe`` attachment replaced, as in ``--stall``) through
``asyncio.to_thread``, as ``run_blocking`` runs it. Each tick's lag is how
much longer than 1 ms it took: the time the loop could not run, which a
small message on another connection waits at each of its round trips.
Reported: ticks, p50, p99 and max lag in ms over ``--walks`` walks, and the
walk's wall time. Another process's load shows in the figures: run an
idle baseline (``--idle``) beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO)
    parser.add_argument("--walks", type=int, default=3)
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="ms; default: what miltrd sets"
    )
    parser.add_argument("--idle", action="store_true", help="no walk: the machine's own noise")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.repo.resolve()))
    for name in [m for m in sys.modules if m == "miltrd" or m.startswith("miltrd.")]:
        del sys.modules[name]
    from miltrd.plugins.defang import Defang, DefangOptions, _BodySource

    from miltrd.api.context import Body
    from miltrd.mta import split_message
    from miltrd.server import daemon

    from .bigmail import big_message

    interval = args.switch_interval
    if interval is None:
        interval = getattr(daemon, "SWITCH_INTERVAL", sys.getswitchinterval()) * 1000
    sys.setswitchinterval(interval / 1000)
    headers, raw_body = split_message(big_message(0, 37 * MiB))
    tmp = tempfile.mkdtemp(prefix="miltrd-looplag-")
    plugin = Defang(
        DefangOptions(save_dir=tmp + "/saved"),
        name="defang",
        internal_rules=None,
        log=logging.getLogger("defang"),
    )

    async def run() -> None:
        lags: list[float] = []
        walks: list[float] = []
        done = False

        async def ticker() -> None:
            while not done:
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append((time.perf_counter() - t - 0.001) * 1000)

        task = asyncio.create_task(ticker())
        for _ in range(args.walks):
            body = Body(MiB)
            for i in range(0, len(raw_body), 65536):
                body.append(raw_body[i : i + 65536])
            await asyncio.sleep(0.05)
            if not walks:
                lags.clear()  # from the first walk on
            t0 = time.perf_counter()
            if args.idle:
                await asyncio.sleep(1.0)
            else:
                source = _BodySource(body, threading.Event())
                out = await asyncio.to_thread(
                    plugin._work, list(headers), source, "Q1", False, True
                )
                if out.body is not None:
                    out.body.close()
            walks.append(time.perf_counter() - t0)
            body.close()
        done = True
        await task
        lags.sort()
        print(
            f"code {args.repo.resolve()}, switch interval {interval:g} ms"
            f"{', idle' if args.idle else ''}: {len(lags)} ticks, lag p50 "
            f"{statistics.median(lags):.1f} p99 {lags[int(len(lags) * 0.99)]:.1f} "
            f"max {lags[-1]:.1f} ms; walk {statistics.median(walks) * 1000:.0f} ms"
        )

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
