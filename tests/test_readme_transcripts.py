"""Every shell transcript in README.md is real: its commands, run, print what it shows.

A transcript is a fenced block whose lines start with ``$ `` (a command) followed
by that command's standard output. ``$ cat FILE`` creates FILE from the lines
shown (the block tells the reader what the file holds); ``$ miltrd ...`` runs
this checkout's miltrd with the sample config (etc/miltrd.toml, installed as
/etc/mail/miltrd.toml), and its output must be the lines shown, exactly.
The sample config's own "Try a message" line is run too.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "etc" / "miltrd.toml"


def transcripts() -> list[str]:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```[a-z]*\n(.*?)```", readme, re.S)
    return [b for b in blocks if b.startswith("$ ")]


def miltrd(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MILTRD_CONFIG": str(SAMPLE), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "miltrd", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_transcript(block: str, cwd: Path) -> None:
    steps = re.split(r"^\$ ", block, flags=re.M)[1:]
    for step in steps:
        command, _, shown = step.partition("\n")
        argv = shlex.split(command)
        if argv[0] == "cat":
            (cwd / argv[1]).write_text(shown)
            continue
        assert argv[0] == "miltrd", f"README transcript runs {command!r}: not a miltrd command"
        result = miltrd(argv[1:], cwd)
        assert result.stdout == shown, (
            f"README.md shows for `{command}`:\n{shown}\nbut it prints:\n{result.stdout}"
            f"{result.stderr}"
        )


def test_readme_transcripts_are_real_output(tmp_path: Path) -> None:
    blocks = transcripts()
    assert any("$ miltrd replay" in b for b in blocks), "the replay example is gone"
    for block in blocks:
        run_transcript(block, tmp_path)


def test_sample_configs_try_a_message_line_is_accepted(tmp_path: Path) -> None:
    line = re.search(r"^# Try a message:\s+(miltrd replay .*)$", SAMPLE.read_text(), re.M)
    assert line, "no 'Try a message' line in etc/miltrd.toml"
    argv = shlex.split(line[1])
    (tmp_path / argv[2]).write_text("From: root@example.com\nSubject: hello\n\nhi\n")
    result = miltrd(argv[1:], tmp_path)
    assert result.stdout.splitlines()[-1] == "verdict: accept", result.stdout + result.stderr
