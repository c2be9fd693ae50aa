"""The README's two commands, as a user runs them: with Debian's own python3.

Each test works on a fresh copy of this checkout (the files git knows, as a
clone would have them) and runs ``scripts/run.sh`` / ``scripts/test.sh`` with
``PATH=/usr/sbin:/usr/bin:/sbin:/bin``, so ``python3`` is /usr/bin/python3,
which refuses a global ``pip install`` (PEP 668): the scripts must make and
use the project's virtual environment themselves.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .tools import free_port, require, wait_for_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
INSTALLING = "venv.sh: installing miltrd"


def debian_env(**extra: str) -> dict[str, str]:
    env = {"PATH": DEBIAN_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the files a clone of this checkout has (plus new, unignored ones)."""
    require("/usr/bin/python3", "git")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    dest = tmp_path_factory.mktemp("clone") / "miltrd"
    for name in filter(None, files):
        src = REPO / os.fsdecode(name)
        if src.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(name))
    # The Sendmail that test.sh unpacks: take this checkout's rather than download it again.
    sendmail = REPO / ".cache" / "sendmail"
    if sendmail.is_dir():
        shutil.copytree(sendmail, dest / ".cache" / "sendmail", symlinks=True)
    assert not (dest / ".venv").exists()
    yield dest


def start_run_sh(checkout: Path, port: int) -> subprocess.Popen[str]:
    config = checkout / "port.toml"
    sample = (checkout / "etc" / "miltrd.toml").read_text()
    config.write_text(
        sample.replace('listen = ["inet:8894@127.0.0.1"]', f'listen = ["inet:{port}@127.0.0.1"]')
    )
    assert f"inet:{port}@" in config.read_text(), "the sample config's listen line moved"
    return subprocess.Popen(
        ["./scripts/run.sh"],
        cwd=checkout,
        env=debian_env(MILTRD_CONFIG=str(config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def serve_one_session(checkout: Path) -> str:
    """Start run.sh, send one message through it as an MTA would, stop it; its output."""
    port = free_port()
    proc = start_run_sh(checkout, port)
    try:
        wait_for_port(port, timeout=300)
        mail = checkout / "mail.eml"
        mail.write_text("From: root@example.com\nSubject: hello\n\nhi\n")
        replay = subprocess.run(
            [
                *(sys.executable, "-m", "miltrd", "replay", str(mail)),
                *("--connect", f"inet:{port}@127.0.0.1", "--client-ip", "127.0.0.1"),
                *("--from", "root@example.com", "--rcpt", "bob@example.com"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "verdict: accept" in replay.stdout, replay.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_run_sh_with_debians_python_installs_once_and_serves(checkout: Path) -> None:
    first = serve_one_session(checkout)
    assert INSTALLING in first
    assert "externally-managed-environment" not in first
    venv_python = checkout / ".venv" / "bin" / "python"
    where = subprocess.run(
        [str(venv_python), "-c", "import sys, miltrd; print(sys.base_prefix, miltrd.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where == ["/usr", str(checkout / "miltrd" / "__init__.py")]

    # A second start serves at once, without pip.
    assert INSTALLING not in serve_one_session(checkout)

    # A change to what pip installed from (the project's metadata) reinstalls once.
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# changed\n")
    assert INSTALLING in serve_one_session(checkout)
    assert INSTALLING not in serve_one_session(checkout)


def test_test_sh_with_debians_python(checkout: Path) -> None:
    """test.sh's own set-up (apt check, venv, ruff, mypy) then one test file."""
    if os.geteuid() != 0 and not shutil.which("sudo"):
        pytest.skip("test.sh installs Debian packages: needs root or sudo")
    result = subprocess.run(
        ["./scripts/test.sh", "-q", "-p", "no:cacheprovider", "tests/test_readme.py"],
        cwd=checkout,
        env=debian_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "externally-managed-environment" not in out
    assert " passed" in result.stdout and " failed" not in result.stdout, out[-4000:]
    # The suite ran in the project's environment, on Debian's interpreter.
    cfg = (checkout / ".venv" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg
    # ... which run.sh then uses as it is.
    assert INSTALLING not in serve_one_session(checkout)
