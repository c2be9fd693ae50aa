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


def test_an_unknown_option_names_the_command_it_was_given_to() -> None:
    result = miltrd("check", "--bogus")
    assert result.returncode == EXIT_USAGE
    assert one_line_no_traceback(result) == (
        "miltrd check: unrecognized arguments: --bogus (see miltrd check --help)"
    )
    nested = miltrd("dkim", "genkey", "example.com", "s1", "--bogus")
    assert nested.returncode == EXIT_USAGE
    assert one_line_no_traceback(nested).startswith("miltrd dkim genkey: unrecognized")


@pytest.mark.parametrize("option", ["--rcpt", "--from"])
@pytest.mark.parametrize("text", ["not an address", "bob", "bob@", "@example.com", "a@b c"])
def test_replay_refuses_what_is_not_an_address(mail: Path, option: str, text: str) -> None:
    args = ["--rcpt", "b@example.com"] if option == "--from" else []
    result = miltrd("replay", str(mail), *args, option, text, "-c", str(SAMPLE))
    assert result.returncode == EXIT_USAGE
    line = one_line_no_traceback(result)
    assert line.startswith(f"miltrd replay: argument {option}: not an address: {text!r}")
    assert "verdict" not in result.stdout


def test_replay_takes_postmaster_and_the_null_sender(mail: Path) -> None:
    result = miltrd(
        "replay", str(mail), "--rcpt", "<Postmaster>", "--from", "<>", "-c", str(SAMPLE)
    )
    assert "verdict: accept" in result.stdout, result.stderr
    assert result.returncode == 0


def test_replay_output_in_a_missing_directory_is_refused_before_the_run(
    mail: Path, tmp_path: Path
) -> None:
    out = tmp_path / "missing" / "out.eml"
    result = miltrd(
        "replay", str(mail), "--rcpt", "b@x.org", "--output", str(out), "-c", str(SAMPLE)
    )
    assert result.returncode == EXIT_USAGE
    assert one_line_no_traceback(result) == (
        f"miltrd replay: --output {out}: no such directory: {out.parent}"
    )
    assert result.stdout == ""  # nothing ran


def test_dkim_genkey_into_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing-dir"
    result = miltrd("dkim", "genkey", "example.com", "sel1", "-D", str(missing))
    assert result.returncode == EXIT_USAGE
    assert one_line_no_traceback(result) == f"miltrd dkim genkey: -D {missing}: no such directory"
    assert not missing.exists()
    # The statuses are in its --help.
    assert "-D not an existing directory" in miltrd("dkim", "genkey", "--help").stdout


def test_synopses_show_rcpt_required_and_dkim_genkey(tmp_path: Path) -> None:
    # The man page miltrd(8), made from the parser as the packages make it.
    subprocess.run(
        [sys.executable, str(REPO / "packaging" / "man" / "manpages.py"), str(tmp_path)],
        check=True,
        timeout=60,
    )
    page = (tmp_path / "miltrd.8").read_text().replace("\\-", "-")
    synopsis = page[page.index(".SH SYNOPSIS") : page.index(".SH DESCRIPTION")]
    assert "miltrd dkim genkey [-h]" in synopsis
    assert "\n.SS dkim genkey\n" in page
    replay = synopsis[synopsis.index("miltrd replay") :]
    assert "--rcpt ADDRESS [--rcpt ADDRESS]..." in replay
    assert "[--rcpt ADDRESS]..." in replay and "[-c FILE] --rcpt" in replay
    # Every option of replay is in its hand-written usage line.
    from miltrd.cli import build_parser, commands

    parser = commands(build_parser())["replay"]
    usage = parser.format_usage()
    for action in parser._actions:
        assert any(o in usage for o in action.option_strings) or not action.option_strings
    # The README's command list agrees.
    readme = (REPO / "README.md").read_text()
    listing = readme[readme.index("## The `miltrd` command") :]
    listing = listing[: listing.index("```\n\n")]
    assert "MESSAGE.eml --rcpt A [--rcpt A]..." in listing
    assert "miltrd dkim genkey DOMAIN SELECTOR" in listing


def test_readme_names_every_package_the_tests_and_the_deb_install() -> None:
    import re

    readme = " ".join((REPO / "README.md").read_text().split())
    script = (REPO / "scripts" / "install-test-deps.sh").read_text()
    wanted = set()
    for var in ("PKGS", "BARE"):
        found = re.search(rf'^{var}="([^"]*)"', script, re.M)
        assert found, var
        wanted |= set(found[1].split())
    control = (REPO / "packaging" / "debian" / "control").read_text()
    for field in ("Depends", "Recommends"):
        value = re.search(rf"^{field}:(.*(?:\n[ \t].*)*)", control, re.M)
        if value is None:
            assert field == "Recommends", field  # optional; Depends is not
            continue
        text = re.sub(r"\$\{[^}]*\}|\([^)]*\)", "", value[1])
        wanted |= {n.strip() for n in re.split(r"[,|]", text) if n.strip()}
    wanted.discard("python3")  # "python3-tomli | python3 (>= 3.11)": Python itself
    # What dh-python adds for the Python requirements (${python3:Depends}).
    wanted |= {"python3-dkim", "python3-nacl", "python3-cryptography"}
    missing = sorted(p for p in wanted if f"`{p}`" not in readme)
    assert not missing, f"README.md does not name: {missing}"


def test_install_test_deps_refers_to_nothing_outside_the_repository() -> None:
    script = (REPO / "scripts" / "install-test-deps.sh").read_text()
    assert "MTA-NOTES" not in script


def test_pymilter_help_lists_its_options_and_exit_status() -> None:
    result = miltrd("pymilter", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert text.startswith("usage: miltrd pymilter [-c FILE] [--log-level LEVEL]")
    for option in ("-c FILE, --config FILE", "--log-level LEVEL", "-m MODULE", "PROGRAM.py"):
        assert option in text
    assert "exit status: the program's own; 2 a command-line mistake" in text
    assert "``" not in text  # plain text, not the module's reStructuredText
