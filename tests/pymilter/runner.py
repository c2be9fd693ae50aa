"""Start a pymilter program as a milter: on the layer or on C pymilter.

``Program(path, socket, engine="miltrd")`` runs ``python -m miltrd pymilter
PATH SOCKET``; ``engine="c"`` runs ``python PATH SOCKET`` with the real
pymilter (C libmilter), skipped when that is not importable.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ..tools import wait_for_port

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).parent / "programs"
ENGINES = ["miltrd", "c"]


def c_pymilter_available() -> bool:
    """Is the C pymilter importable by a normally started Python?"""
    probe = subprocess.run(
        [sys.executable, "-c", "import milter, Milter; assert hasattr(milter, 'main')"],
        cwd="/",
        capture_output=True,
        timeout=60,
    )
    return probe.returncode == 0


def require_engine(engine: str) -> None:
    if engine == "c" and not c_pymilter_available():
        pytest.skip("C pymilter is not installed (pip install pymilter, needs libmilter-dev)")


class Program:
    def __init__(
        self,
        path: Path,
        *args: str,
        engine: str = "miltrd",
        port: int | None = None,
        unix_path: Path | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        require_engine(engine)
        self.engine = engine
        fd, name = tempfile.mkstemp(prefix=f"{path.stem}-{engine}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self.logfile = open(self.log_path, "wb")  # noqa: SIM115
        full_env = dict(os.environ, **(env or {}))
        if engine == "miltrd":
            full_env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(REPO), full_env.get("PYTHONPATH")])
            )
            cmd = [sys.executable, "-m", "miltrd", "pymilter", str(path), *args]
        else:
            cmd = [sys.executable, str(path), *args]
        self.proc = subprocess.Popen(
            cmd, stdout=self.logfile, stderr=subprocess.STDOUT, env=full_env, cwd=cwd or path.parent
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{engine} {path.name} did not start:\n{self.log()}")
            try:
                if port is not None:
                    wait_for_port(port, timeout=0.2)
                    break
                if unix_path is not None and unix_path.exists():
                    # The file appears at bind(); wait until something listens.
                    with socket.socket(socket.AF_UNIX) as probe:
                        probe.connect(str(unix_path))
                    break
            except OSError:
                continue
            time.sleep(0.05)

    def log(self) -> str:
        if not self.logfile.closed:
            self.logfile.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfile.close()
        return self.proc.returncode
