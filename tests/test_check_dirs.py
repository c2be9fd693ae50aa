"""``miltrd check`` refuses an archive or quarantine directory the daemon
could not write: the daemon would tempfail every message that needs it
(found by a newcomer: check said OK, then every archived message got 451)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from miltrd.cli import main


def _config(tmp: Path, root: Path, save_dir: Path, user: str = "") -> Path:
    cfg = tmp / "miltrd.toml"
    cfg.write_text(
        f"[daemon]\n{user}\n"
        '[chain]\nplugins = ["defang", "wiretap"]\n'
        f'[plugins.defang]\nsave_dir = "{save_dir}"\n'
        f'[plugins.wiretap]\nroot = "{root}"\n'
        '[[plugins.wiretap.archive]]\npath = "{direction}/{user}"\n'
    )
    return cfg


def test_a_directory_below_a_file_is_refused_with_line_and_key(tmp_path: Path, capsys) -> None:
    (tmp_path / "afile").write_text("")
    cfg = _config(tmp_path, tmp_path / "afile" / "archive", tmp_path / "q")
    assert main(["check", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"miltrd.toml:8: plugins.wiretap.root: {tmp_path}/afile/archive: " in err
    assert f"{tmp_path}/afile is not a directory" in err


def test_missing_directories_below_a_writable_one_are_fine(tmp_path: Path, capsys) -> None:
    cfg = _config(tmp_path, tmp_path / "spool" / "archive", tmp_path / "spool" / "q")
    assert main(["check", "-c", str(cfg)]) == 0
    assert "OK" in capsys.readouterr().out


def test_a_directory_the_service_user_cannot_write_is_refused(tmp_path: Path, capsys) -> None:
    if os.geteuid() != 0:
        pytest.skip("judging another user's access needs a root-run check")
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o755)  # root's, as /var/spool is
    os.chmod(tmp_path, 0o755)
    cfg = _config(tmp_path, spool / "archive", spool / "q", user='user = "nobody"')
    assert main(["check", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "plugins.defang.save_dir: " in err
    assert f"{spool} is not writable by user nobody (mode 0755)" in err
    assert "plugins.wiretap.root: " in err
