"""What an administrator reads: the summary line, replay's output, the
plugins' own log lines and ``miltrd stats`` say what really happened, and
``miltrd replay`` changes nothing outside its ``--output``."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from miltrd.logreport import parse_lines, report

REPO = Path(__file__).resolve().parents[1]
PE = b"MZ" + b"\x90" * 58 + (64).to_bytes(4, "little") + b"PE\x00\x00" + b"\x00" * 200


def site_config(tmp: Path, log_level: str = "info") -> Path:
    cfg = tmp / "miltrd.toml"
    cfg.write_text(
        f'[daemon]\nlog_level = "{log_level}"\n'
        '[internal]\nnetworks = ["10.0.0.0/8"]\ndomains = ["corp.test"]\n'
        '[chain]\nplugins = ["zombie", "spf", "defang", "wiretap"]\n'
        '[plugins.spf]\nnameservers = ["127.0.0.1:9"]\ndns_timeout = 1.0\n'
        f'[plugins.defang]\nsave_dir = "{tmp / "quarantine"}"\n'
        f'[plugins.wiretap]\nroot = "{tmp / "archive"}"\n'
        '[[plugins.wiretap.archive]]\npath = "{direction}/{user}"\n'
    )
    return cfg


def with_exe() -> bytes:
    exe = base64.encodebytes(PE).decode()
    return (
        "From: a@corp.test\nTo: b@corp.test\nSubject: tools\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="b1"\n\n--b1\nContent-Type: text/plain\n\n'
        "see attached\n--b1\nContent-Type: application/octet-stream\n"
        'Content-Disposition: attachment; filename="setup.exe"\n'
        f"Content-Transfer-Encoding: base64\n\n{exe}--b1--\n"
    ).encode()


def replay(cfg: Path, mail: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    path = cfg.parent / "m.eml"
    path.write_bytes(mail)
    return subprocess.run(
        [sys.executable, "-m", "miltrd", "replay", str(path), "-c", str(cfg), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=60,
    )


def files_below(path: Path) -> list[Path]:
    return [p for p in path.rglob("*")] if path.exists() else []


def summary(stderr: str) -> str:
    (line,) = [ln for ln in stderr.splitlines() if " summary client=" in ln]
    return line


def test_plugins_after_an_early_reject_are_shown_as_not_run(tmp_path: Path) -> None:
    cfg = site_config(tmp_path)
    result = replay(
        cfg,
        with_exe(),
        "--client-ip",
        "10.1.2.3",
        "--from",
        "boss@evil.example",
        "--rcpt",
        "b@corp.test",
    )
    assert result.returncode == 5, result.stderr
    line = summary(result.stderr)
    assert "plugins=zombie:reject,spf:not-run,defang:not-run,wiretap:not-run " in line
    assert "changes=- " in line
    assert "plugin defang: not run (the message was decided before its turn)" in result.stdout
    assert "plugin wiretap: not run" in result.stdout
    assert "applied, continue" not in result.stdout


def test_changes_are_in_the_summary_and_counted_by_stats(tmp_path: Path) -> None:
    cfg = site_config(tmp_path)
    result = replay(
        cfg, with_exe(), "--client-ip", "10.1.2.3", "--from", "a@corp.test", "--rcpt", "b@corp.test"
    )
    assert result.returncode == 0, result.stderr
    line = summary(result.stderr)
    assert "defang:continue" in line
    assert "changes=defang:replace-body+add-header+would-saved,wiretap:would-archived " in line
    stats = parse_lines(result.stderr.splitlines())
    assert stats.changes == {
        "defang replace-body": 1,
        "defang add-header": 1,
        "defang would-saved": 1,
        "wiretap would-archived": 1,
    }
    assert "defang replace-body" in report(stats)


def test_replay_writes_nothing_and_says_what_would_have_been_written(tmp_path: Path) -> None:
    cfg = site_config(tmp_path)
    out = tmp_path / "out.eml"
    result = replay(
        cfg,
        with_exe(),
        "--client-ip",
        "10.1.2.3",
        "--from",
        "a@corp.test",
        "--rcpt",
        "b@corp.test",
        "--output",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert files_below(tmp_path / "quarantine") == []
    assert files_below(tmp_path / "archive") == []
    assert b"setup.exe" in out.read_bytes()  # the notice names what was removed
    assert PE not in out.read_bytes()
    stdout = result.stdout
    quarantine = tmp_path / "quarantine"
    archive = tmp_path / "archive" / "internal" / "b"
    assert f"plugin defang: would have saved: {quarantine}/" in stdout
    assert f"plugin wiretap: would have archived: {archive} (maildir)" in stdout
    assert (
        "plugin defang: applied, continue; changes: replace-body add-header would-saved" in stdout
    )


def test_every_plugin_line_names_the_plugin_and_debug_traces_the_verdicts(tmp_path: Path) -> None:
    cfg = site_config(tmp_path, log_level="debug")
    result = replay(
        cfg, with_exe(), "--client-ip", "10.1.2.3", "--from", "a@corp.test", "--rcpt", "b@corp.test"
    )
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert "plugin spf: not checked: internal client 10.1.2.3" in log
    assert "plugin defang: setup.exe: " in log
    for phase in ("connect", "mail", "rcpt <b@corp.test>", "eom"):
        assert f" {phase}: " in log, phase
    assert "plugin zombie: mail -> continue" in log
    assert "plugin defang: eom -> continue" in log
