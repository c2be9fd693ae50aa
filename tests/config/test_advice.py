"""Shipped defaults a fresh install can trust: placeholders never enforce,
``check`` says what looks wrong, and the timeouts suit the MTAs' own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from miltrd.chain import build_runtime
from miltrd.cli.check import END_OF_MESSAGE, SENDMAIL_REPLY, timeout_warnings
from miltrd.config import load, load_text
from miltrd.config.model import DaemonConfig

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "etc" / "miltrd.toml"
POSTFIX_COMMAND = 30.0  # Postfix's milter_command_timeout default


def miltrd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "miltrd", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=cwd,
        timeout=60,
    )


def test_the_shipped_config_refuses_no_mail(tmp_path: Path) -> None:
    mail = tmp_path / "cron.eml"
    mail.write_text("From: root@host.example.com\nSubject: cron\n\nbackup done\n")
    # Local cron mail (non_smtpd_milters), and mail arriving through a load
    # balancer on a private address: both delivered, nothing refused.
    for ip, sender in [("127.0.0.1", "root@host.example.com"), ("10.1.2.3", "a@elsewhere.org")]:
        result = miltrd(
            "replay", str(mail), "-c", str(SAMPLE), "--client-ip", ip,
            "--from", sender, "--rcpt", "root@host.example.com",
            cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "verdict: accept" in result.stdout
    cron = miltrd(
        "replay", str(mail), "-c", str(SAMPLE), "--from", "root@host.example.com",
        "--rcpt", "root@host.example.com",
        cwd=tmp_path,
    )  # fmt: skip
    # What it would do once configured is still shown.
    assert "plugins=zombie:would-reject" in cron.stderr


def test_check_warns_about_placeholders_and_host_bits(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        "[internal]\n"
        'networks = ["127.0.0.0/8", "192.168.1.1/24"]\n'
        'domains = ["corp.test"]\n'
        "[chain]\n"
        'plugins = ["zombie", "bcc"]\n'
        "[[plugins.bcc.rules]]\n"
        'copy_to = ["archive@your-domain.example"]\n'
    )
    result = miltrd("check", "-c", str(cfg), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines()
    assert warnings == [
        f'warning: {cfg}:2: internal.networks[1]: "192.168.1.1/24" has host bits set: it '
        "means 192.168.1.0/24; write that, or the address alone (192.168.1.1) if one host "
        "was meant",
        f'warning: {cfg}:7: plugins.bcc.rules[0].copy_to[0]: "archive@your-domain.example" '
        "is a placeholder (.example is for documentation, RFC 2606)",
    ]
    # Real domains: the plugins enforce.
    assert "1. zombie [enforce]" in result.stdout and "2. bcc [enforce]" in result.stdout


def test_placeholder_domains_turn_enforce_into_observe() -> None:
    for placeholder in ["your-domain.example", "Mail.Corp.EXAMPLE", "example"]:
        config = load_text(
            f'[internal]\ndomains = ["{placeholder}"]\n[chain]\nplugins = ["zombie"]\n'
        )
        (entry,) = config.plugins
        assert entry.mode == "observe"
        assert placeholder in entry.observe_why
        assert config.warnings[0].path == "internal.domains[0]"
    for real in ["example.com", "corp.examples", "example.org"]:
        config = load_text(f'[internal]\ndomains = ["{real}"]\n[chain]\nplugins = ["zombie"]\n')
        assert config.plugins[0].mode == "enforce" and config.warnings == ()


def test_shipped_timeouts_suit_the_mtas_stock_timeouts() -> None:
    assert DaemonConfig.__dataclass_fields__["timeout"].default < SENDMAIL_REPLY < POSTFIX_COMMAND
    runtime = build_runtime(load(SAMPLE))
    assert timeout_warnings(runtime) == []
    for p in runtime.plugins:
        assert p.timeout < SENDMAIL_REPLY
        if p.name == "spf":
            assert p.plugin.options.dns_timeout < p.timeout
    spf = build_runtime(load_text('[chain]\nplugins = ["spf"]\n')).plugins[0]
    assert spf.plugin.options.dns_timeout < spf.timeout  # the built-in defaults too
    assert END_OF_MESSAGE == 300.0


def test_check_warns_when_a_steps_timeouts_add_up_past_sendmails_reply_wait() -> None:
    runtime = build_runtime(
        load_text(
            "[daemon]\ntimeout = 6.0\n"
            '[internal]\ndomains = ["corp.test"]\n[chain]\nplugins = ["zombie", "spf"]\n'
        )
    )
    (text,) = timeout_warnings(runtime)
    assert "mail: the plugins' timeouts add up to 12s (zombie 6s + spf 6s)" in text
    assert "Sendmail's default R:10s" in text
