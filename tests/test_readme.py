"""The README's example plugin is real code: load it and run a message through it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_example_plugin_works(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(# mysite/exttag.py.*?)```", readme, re.S)
    assert code, "example plugin not found in README.md"
    pkg = tmp_path / "mysite"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "exttag.py").write_text(code.group(1))
    toml = re.search(
        r"```toml\n\[chain\]\nplugins = \[[^\n]*\"exttag\"\][^\n]*\n(.*?)```", readme, re.S
    )
    assert toml, "example config not found in README.md"
    cfg = tmp_path / "miltrd.toml"
    # The block's own table, on a chain of exttag alone (the README block's
    # chain, pasted into the sample, is test_readme_toml's).
    cfg.write_text('[chain]\nplugins = ["exttag"]\n' + toml.group(1))
    mail = tmp_path / "mail.eml"
    mail.write_text("From: a@example.net\nSubject: hello\n\nhi\n")
    out = tmp_path / "out.eml"

    def replay(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "miltrd", "replay", str(mail), "-c", str(cfg), *args],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"},
            timeout=60,
        )

    result = replay(
        "--client-ip",
        "192.0.2.1",
        "--from",
        "a@example.net",
        "--rcpt",
        "b@example.com",
        "--output",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "change: change header Subject #1: [EXTERNAL] hello" in result.stdout
    assert "verdict: accept" in result.stdout
    assert b"Subject: [EXTERNAL] hello" in out.read_bytes()

    internal = replay("--client-ip", "127.0.0.1", "--from", "a@example.net", "--rcpt", "b@x.org")
    assert "change:" not in internal.stdout
