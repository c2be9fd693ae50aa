"""Decoding cost of a Postfix-shaped session's packets, without sockets.

    python3 -m bench.decode                          # this checkout
    python3 -m bench.decode --compare-tree DIR       # and another checkout, interleaved

The packets are what Postfix 3.7 sends for one message with its default
macros (bench/postfixgen.py): a macro packet before each stage, CONNECT,
HELO, MAIL, RCPT, ten headers. Each round decodes all of them with
``decode_command``; the figure is the best of 40 samples of ``--number``
sessions in each of ``--repeat`` rounds, in microseconds per session (the
best, not the mean: on a shared machine everything else only adds time).

A third line shows what validating the decoded fields would add: the same
commands rebuilt through their public, validating constructors, which is
what the decoder did before it built its commands directly.

With ``--compare-tree``, each round alternates between this checkout and
the other one, each in its own interpreter (``PYTHONPATH=DIR``), so that a
busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def packets() -> list[tuple[int, bytes]]:
    from miltrd.protocol import (
        Connect,
        DefineMacros,
        Family,
        Header,
        Helo,
        MacroStage,
        MailFrom,
        RcptTo,
        encode_command,
    )

    from .postfixgen import _STAGE_COMMAND, CLIENT_ADDR, CLIENT_NAME, POSTFIX_MACROS, _available

    wires = [
        encode_command(DefineMacros(_STAGE_COMMAND[stage], _available(stage, "4QABCDEF")))
        for stage in (MacroStage.CONNECT, MacroStage.HELO)
    ]
    wires += [
        encode_command(Connect(CLIENT_NAME, Family.INET, 40000, CLIENT_ADDR)),
        encode_command(Helo(CLIENT_NAME)),
    ]
    for stage, cmd in (
        (MacroStage.ENVFROM, MailFrom("<sender@example.com>", ("SIZE=4096",))),
        (MacroStage.ENVRCPT, RcptTo("<rcpt@example.com>")),
    ):
        have = _available(stage, "4QABCDEF")
        pairs = {n: have[n] for n in POSTFIX_MACROS[stage] if n in have}
        wires += [encode_command(DefineMacros(_STAGE_COMMAND[stage], pairs)), encode_command(cmd)]
    wires += [
        encode_command(Header(f"X-Header-{i}", f"value number {i} " + "x" * 40)) for i in range(10)
    ]
    return [(w[4], w[5:]) for w in wires]


def measure(number: int) -> dict[str, float]:
    """One round in this interpreter: microseconds per session, the best of
    many short samples of ``number`` sessions (a short sample is less
    likely to be preempted on a busy machine)."""
    from miltrd.protocol import decode_command

    todo = packets()
    decoded = [decode_command(code, data) for code, data in todo]

    def decode() -> None:
        for code, data in todo:
            decode_command(code, data)

    def rebuild() -> None:
        for cmd in decoded:
            kind = type(cmd)
            kind(*(getattr(cmd, f.name) for f in dataclasses.fields(cmd)))

    def fields_only() -> None:
        for cmd in decoded:
            tuple(getattr(cmd, f.name) for f in dataclasses.fields(cmd))

    out = {}
    for name, fn in (("decode", decode), ("rebuild", rebuild), ("fields", fields_only)):
        out[name] = min(timeit.repeat(fn, number=number, repeat=40)) / number * 1e6
    return out


def _child(tree: Path, number: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{REPO}")
    code = f"import json; from bench.decode import measure; print(json.dumps(measure({number})))"
    # The checkout's own miltrd must win over an editable install: run from
    # the tree (sys.path[0] is the working directory with -c).
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--number", type=int, default=100, help="sessions per sample")
    parser.add_argument("--repeat", type=int, default=7, help="rounds; the best is reported")
    parser.add_argument("--compare-tree", type=Path, help="another checkout of miltrd")
    parser.add_argument("--compare-label", default="other")
    args = parser.parse_args(argv)
    trees = [("this checkout", REPO)]
    if args.compare_tree:
        trees.append((args.compare_label, args.compare_tree.resolve()))
    best: dict[str, dict[str, float]] = {label: {} for label, _ in trees}
    for _ in range(args.repeat):
        for label, tree in trees:
            for key, value in _child(tree, args.number).items():
                best[label][key] = min(best[label].get(key, value), value)
    print(
        f"# decoding one Postfix-shaped session ({len(packets())} packets), best of {args.repeat}"
    )
    print("| code | decode_command µs | rebuilt by the public constructors µs |")
    print("|---|---|---|")
    for label, _ in trees:
        b = best[label]
        # What validation adds: the rebuild minus reading the fields back.
        print(f"| {label} | {b['decode']:.1f} | +{b['rebuild'] - b['fields']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
