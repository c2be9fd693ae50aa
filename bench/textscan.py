"""How fast defang finds files outside MIME in big text parts.

    python3 -m bench.textscan                    # the code of this checkout
    python3 -m bench.textscan --repo DIR         # another checkout's plugins/

``find_blocks`` (plugins/_nonmime.py) looks through every decoded text part
for uuencode, BinHex 4.0 and yEnc blocks. This times it, alone, on text
parts the benchmark makes: prose lines of 40-90 characters, some quoted with
``>``, some starting with words like "begin"; one has a small uuencoded file
near its end, one has no block at all, one is long lines (an HTML part
without line breaks every 64 KiB). Figures: the best of ``--repeat`` runs,
in milliseconds and MiB/s, and the blocks found (which must not differ
between two versions of the code).
"""

from __future__ import annotations

import argparse
import binascii
import importlib
import random
import sys
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
WORDS = (
    b"the a mail filter begin end report invoice please find attached regards "
    b"thank you meeting tomorrow beginning ending =ybegin-like (This file) binhex"
).split()


def prose(size: int, seed: int) -> bytearray:
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        line = b" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(6, 14)))
        if rnd.random() < 0.1:
            line = b"> " + line
        out += line + b"\r\n"
    return out


def uu_block(name: bytes, data: bytes) -> bytes:
    lines = [b"begin 644 " + name + b"\r\n"]
    for i in range(0, len(data), 45):
        lines.append(binascii.b2a_uu(data[i : i + 45]).replace(b"\n", b"\r\n"))
    return b"".join(lines) + b"`\r\nend\r\n"


def inputs(mib: int) -> dict[str, bytes]:
    size = mib << 20
    text = prose(size, 1)
    with_block = bytearray(text)
    at = with_block.rfind(b"\r\n", 0, size - 4096) + 2
    with_block[at:at] = uu_block(b"setup.exe", b"MZ" + bytes(range(256)) * 8)
    long_lines = bytes(text).replace(b"\r\n", b" ")
    long_lines = b"\r\n".join(long_lines[i : i + 65536] for i in range(0, size, 65536))
    return {
        "prose, no block": bytes(text),
        "prose, one uuencoded file near the end": bytes(with_block),
        "64 KiB lines, no block": long_lines,
    }


def load(repo: Path) -> tuple[ModuleType, ModuleType]:
    sys.path.insert(0, str(repo))
    for name in [m for m in sys.modules if m == "plugins" or m.startswith("plugins.")]:
        del sys.modules[name]
    nonmime = importlib.import_module("plugins._nonmime")
    decode = importlib.import_module("plugins._decode")
    return nonmime, decode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose plugins/ run")
    parser.add_argument("--sizes", default="1,8,32", help="text part sizes, MiB")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    nonmime, decode = load(args.repo.resolve())
    print(f"# plugins from {args.repo.resolve()}; Python {sys.version.split()[0]}")
    print("| text part | MiB | best ms | MiB/s | blocks found |")
    print("|---|---|---|---|---|")
    for mib in (int(s) for s in args.sizes.split(",")):
        for label, data in inputs(mib).items():
            text = decode.Decoded()
            text.write(data)
            best = float("inf")
            found: list[str] = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                blocks = nonmime.find_blocks(text, 50 << 20)
                best = min(best, time.perf_counter() - t0)
                found = [f"{b.kind} {b.name} @{b.start}" for b in blocks]
                for b in blocks:
                    b.content.close()
            text.close()
            mibs = len(data) / (1 << 20)
            print(
                f"| {label} | {mibs:.1f} | {best * 1000:.0f} | {mibs / best:.0f} | "
                f"{', '.join(found) or 'none'} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
