"""Third-party plugins found through the entry-point group miltrd.plugins,
and clear errors for plugins that break the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from miltrd.api import Plugin
from miltrd.registry import PluginLoadError, validate_plugin

REPO = Path(__file__).resolve().parents[1]


def test_plugin_installed_as_an_entry_point(tmp_path: Path) -> None:
    (tmp_path / "site_shout.py").write_text(
        "from miltrd.api import Action, Message, Plugin, Verdict\n"
        "class Shout(Plugin):\n"
        "    actions = Action.ADD_HEADERS\n"
        "    async def on_eom(self, msg: Message) -> Verdict | None:\n"
        "        msg.add_header('X-Shout', 'HELLO')\n"
        "        return None\n"
    )
    dist = tmp_path / "site_shout-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: site-shout\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[miltrd.plugins]\nshout = site_shout:Shout\n")
    cfg = tmp_path / "m.toml"
    cfg.write_text('[chain]\nplugins = ["shout"]\n')
    mail = tmp_path / "m.eml"
    mail.write_text("Subject: x\n\nbody\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    check = subprocess.run(
        [sys.executable, "-m", "miltrd", "check", "-c", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert check.returncode == 0, check.stderr
    assert "1. shout [enforce] hooks: eom" in check.stdout
    replay = subprocess.run(
        [sys.executable, "-m", "miltrd", "replay", str(mail), "--rcpt", "b@x.org", "-c", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "change: add header X-Shout: HELLO" in replay.stdout


def test_api_violations_name_the_plugin_and_the_hook() -> None:
    class NotAsync(Plugin):
        def on_mail(self, msg, sender):  # type: ignore[override]
            return None

    class WrongArgs(Plugin):
        async def on_rcpt(self, msg):  # type: ignore[override]
            return None

    with pytest.raises(PluginLoadError, match="on_mail must be declared 'async def'"):
        validate_plugin(NotAsync, "x")
    with pytest.raises(PluginLoadError, match=r"on_rcpt takes \(self, msg\)"):
        validate_plugin(WrongArgs, "y")


class Misspelled(Plugin):
    """Means on_rcpt; as written it would never be called."""

    async def on_rctp(self, msg, recipient):  # type: ignore[no-untyped-def]
        return None


def test_a_misspelled_hook_is_refused_at_load_time_with_file_and_class() -> None:
    from miltrd.config import ConfigError, load_text

    with pytest.raises(PluginLoadError) as info:
        validate_plugin(Misspelled, "m")
    text = str(info.value)
    assert "on_rctp is not a hook (did you mean on_rcpt?)" in text
    assert f"{Path(__file__)}: tests.test_registry.Misspelled" in text

    config = '[chain]\nplugins = ["m"]\n[plugins.m]\nuse = "tests.test_registry:Misspelled"\n'
    with pytest.raises(ConfigError) as loaded:
        load_text(config, "m.toml")
    (problem,) = [str(p) for p in loaded.value.problems]
    assert problem.startswith("m.toml:4: plugins.m.use: ")
    assert "on_rctp is not a hook" in problem and "test_registry.py" in problem
