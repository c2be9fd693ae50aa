"""The packages, built once from this checkout with packaging/build.sh."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ..tools import require

REPO = Path(__file__).resolve().parents[2]
SYSTEM = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


@pytest.fixture(scope="session")
def built() -> dict[str, Path]:
    """Build the deb and the source rpm into dist/ (nothing is installed on this host)."""
    require("/usr/bin/dpkg-buildpackage", "/usr/bin/dh", "/usr/bin/rpmbuild")
    for old in (REPO / "dist").glob("miltrd*"):
        old.unlink()
    result = subprocess.run(
        [str(REPO / "packaging" / "build.sh")],
        capture_output=True,
        text=True,
        env=SYSTEM,
        timeout=900,
        cwd="/",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    dist = REPO / "dist"
    return {
        "deb": next(dist.glob("miltrd_*_all.deb")),
        "srpm": next(dist.glob("miltrd-*.src.rpm")),
    }


@pytest.fixture(scope="session")
def deb(built: dict[str, Path]) -> Path:
    return built["deb"]
