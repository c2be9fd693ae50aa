"""The ``miltrd`` command as a user meets it: one line per mistake, no
traceback, and the documented exit statuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from miltrd.cli.exits import EXIT_PIPE, EXIT_USAGE, REPLAY_EXITS

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "etc" / "miltrd.toml"


def miltrd(*args: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "miltrd", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=REPO,
        timeout=60,
    )


def one_line_no_traceback(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def mail(tmp_path: Path) -> Path:
    path = tmp_path / "m.eml"
    path.write_text("From: a@example.org\nSubject: hi\n\nbody\n")
    return path


def test_replay_of_a_missing_file(tmp_path: Path) -> None:
    result = miltrd("replay", str(tmp_path / "missing.eml"), "--rcpt", "b@example.com")
    assert result.returncode == EXIT_USAGE
    line = one_line_no_traceback(result)
    assert line == f"miltrd replay: {tmp_path / 'missing.eml'}: No such file or directory"


def test_replay_connect_in_postfix_syntax_says_the_sendmail_form(mail: Path) -> None:
    result = miltrd("replay", str(mail), "--rcpt", "b@x.org", "--connect", "inet:127.0.0.1:18894")
    assert result.returncode == EXIT_USAGE
    line = one_line_no_traceback(result)
    assert "Postfix's syntax" in line and "inet:18894@127.0.0.1" in line


def test_replay_client_ip_that_is_no_address_is_a_usage_error(mail: Path) -> None:
    result = miltrd("replay", str(mail), "--rcpt", "b@x.org", "--client-ip", "notanip")
    assert result.returncode == EXIT_USAGE
    assert "not an IP address: 'notanip'" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_connect_to_nothing_is_one_line(mail: Path) -> None:
    from .tools import free_port

    spec = f"inet:{free_port()}@127.0.0.1"
    result = miltrd("replay", str(mail), "--rcpt", "b@x.org", "--connect", spec)
    assert result.returncode == 1
    assert spec in one_line_no_traceback(result)


def test_replay_without_rcpt_does_not_invent_one(mail: Path) -> None:
    result = miltrd("replay", str(mail), "-c", str(SAMPLE))
    assert result.returncode == EXIT_USAGE
    assert "--rcpt" in result.stderr
    assert "postmaster@localhost" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_replay_help_shows_client_ip_default_and_meaning_and_exit_statuses() -> None:
    text = " ".join(miltrd("replay", "--help").stdout.split())
    assert "default: 127.0.0.1" in text
    assert "internal" in text and "192.0.2.1" in text
    for status, code in REPLAY_EXITS.items():
        assert f"{code} {status}" in text
    top = " ".join(miltrd("--help").stdout.split())
    assert f"{EXIT_PIPE} standard output was closed" in top


def _replay_config(tmp_path: Path, verdict: str) -> Path:
    cfg = tmp_path / f"{verdict}.toml"
    cfg.write_text(
        '[chain]\nplugins = ["v"]\n'
        f'[plugins.v]\nuse = "tests.testplugins:Verdicts"\nverdict = "{verdict}"\n'
    )
    return cfg


@pytest.mark.parametrize("verdict", ["continue", "reject", "tempfail", "discard"])
def test_replay_exit_status_is_the_verdict(tmp_path: Path, mail: Path, verdict: str) -> None:
    cfg = _replay_config(tmp_path, verdict)
    result = miltrd("replay", str(mail), "--rcpt", "b@x.org", "--from", "a@x.org", "-c", str(cfg))
    action = "accept" if verdict == "continue" else verdict
    assert f"verdict: {action}" in result.stdout, result.stdout + result.stderr
    assert result.returncode == REPLAY_EXITS[action]


def test_broken_pipe_is_quiet() -> None:
    # `miltrd check | head -1` with the reader already gone.
    read, write = os.pipe()
    os.close(read)
    try:
        result = miltrd("check", "-c", str(SAMPLE), stdout=write)
    finally:
        os.close(write)
    assert result.returncode == EXIT_PIPE
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_stats_of_an_unreadable_file(tmp_path: Path) -> None:
    result = miltrd("stats", str(tmp_path / "nope.log"))
    assert result.returncode == EXIT_USAGE
    assert "nope.log: No such file or directory" in one_line_no_traceback(result)
