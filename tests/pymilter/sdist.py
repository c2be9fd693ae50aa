"""pymilter's published source distribution, fetched by pip at test set-up.

Nothing of it is copied into this repository: ``pip download --no-deps
--no-binary :all: pymilter==1.0.5`` puts the sdist in .cache/pymilter (once;
scripts/install-test-deps.sh fetches it too) and each test unpacks a fresh
copy, since pymilter's tests write into their test/ directory.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "pymilter"
VERSION = "1.0.5"
TARBALL = CACHE / f"pymilter-{VERSION}.tar.gz"


def fetch() -> Path:
    """The sdist tarball, downloaded by pip if not cached yet."""
    if not TARBALL.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"pymilter=={VERSION}", "-d", str(CACHE)],
            capture_output=True,
            text=True,
            timeout=600,
        )  # fmt: skip
        if result.returncode != 0 or not TARBALL.exists():
            pytest.fail(
                f"pip could not fetch pymilter {VERSION}'s sdist into {CACHE} "
                f"(run scripts/install-test-deps.sh with network access):\n{result.stderr}"
            )
    return TARBALL


def unpack(where: Path) -> Path:
    """A fresh copy of the sdist's tree under ``where``; returns its root."""
    with tarfile.open(fetch()) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(where, filter="data")
        else:
            # Debian 12's Python 3.11.2 predates extraction filters (3.11.4):
            # refuse by hand what the "data" filter would.
            for member in tar.getmembers():
                target = (where / member.name).resolve()
                if not target.is_relative_to(where.resolve()) or not (
                    member.isfile() or member.isdir()
                ):
                    raise RuntimeError(f"unsafe member in the pymilter sdist: {member.name}")
            tar.extractall(where)
    return where / f"pymilter-{VERSION}"
