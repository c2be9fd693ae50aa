"""A short coverage-guided fuzzing run (atheris) over both sides of the engine.

The long run (a million inputs and more) is documented in README.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..tools import require

REPO = Path(__file__).resolve().parents[2]


def test_fuzzer_finds_nothing_in_a_short_run(tmp_path: Path) -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        require("python module atheris")
    corpus = tmp_path / "corpus"
    shutil.copytree(REPO / "fuzz" / "corpus", corpus)
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "fuzz" / "fuzz_engine.py"),
            "-runs=30000",
            "-max_len=4096",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 30000 runs" in result.stderr
