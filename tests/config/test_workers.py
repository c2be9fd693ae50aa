"""daemon.workers: a number of processes, or "auto" for one per usable core."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from miltrd.cli import main
from miltrd.config import ConfigError, load_text


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, "m.toml")
    return [str(p) for p in info.value.problems]


def test_auto_is_the_cores_this_process_may_use() -> None:
    workers = load_text('[daemon]\nworkers = "auto"\n', "m.toml").daemon.workers
    assert workers == len(os.sched_getaffinity(0))
    assert workers.auto


def test_auto_follows_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    # A systemd CPUAffinity= or taskset narrows the mask: auto counts that.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert load_text('[daemon]\nworkers = "auto"\n').daemon.workers == 3


def test_a_number_is_kept() -> None:
    workers = load_text("[daemon]\nworkers = 3\n").daemon.workers
    assert workers == 3
    assert not workers.auto
    assert load_text("").daemon.workers == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"many"', "expected an integer or one of 'auto', got \"many\""),
        ('"Auto"', "expected an integer or one of 'auto', got \"Auto\""),
        ('"2"', "expected an integer or one of 'auto', got \"2\""),
        ("2.5", "expected an integer or one of 'auto', got 2.5"),
        ("true", "expected an integer or one of 'auto', got true"),
        ("0", "must be between 1 and 256"),
        ("257", "must be between 1 and 256"),
    ],
)
def test_bad_values_name_file_line_and_key(value: str, message: str) -> None:
    text = f'[daemon]\nlisten = ["inet:8894@127.0.0.1"]\nworkers = {value}\n'
    assert problems(text) == [f"m.toml:3: daemon.workers: {message}"]


def test_check_says_how_many_and_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('[daemon]\nworkers = "auto"\n')
    assert main(["check", "-c", str(cfg)]) == 0
    cores = len(os.sched_getaffinity(0))
    assert f"workers: {cores} (auto: one per usable core)\n" in capsys.readouterr().out
    cfg.write_text("[daemon]\nworkers = 2\n")
    assert main(["check", "-c", str(cfg)]) == 0
    assert "workers: 2\n" in capsys.readouterr().out
