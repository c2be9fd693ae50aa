"""scripts/install-test-deps.sh never takes the machine's own MTA away.

The script runs with stand-ins for dpkg-query (what the machine has
installed), apt-get and debconf-set-selections (recording what they were
asked to do) first on PATH, on a copy of the scripts. With exim4 as the
machine's MTA it must not ask for postfix (which would remove exim4) and
must say why in one line; on a machine without an MTA it installs postfix.
Every install it asks for forbids removals (--no-remove).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FAKE_DPKG_QUERY = """#!/bin/sh
# $INSTALLED: "name provides" pairs separated by ';'
case "$*" in
  *'${Package}'*)
    echo "$INSTALLED" | tr ';' '\\n' | while read -r name provides; do
        [ -n "$name" ] && echo "$name install ok installed $provides"
    done ;;
  *)
    pkg=$(eval echo \\${$#})
    echo "$INSTALLED" | tr ';' '\\n' | grep -q "^$pkg\\( \\|$\\)" && printf 'install ok installed'
    ;;
esac
exit 0
"""

RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$LOG"
"""


def run_script(tmp: Path, installed: str) -> tuple[str, str]:
    work = tmp / "proj"
    (work / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "install-test-deps.sh", work / "scripts")
    sendmail = work / ".cache/sendmail/root/usr/libexec/sendmail/sendmail"
    sendmail.parent.mkdir(parents=True)
    sendmail.write_text("#!/bin/sh\n")
    sendmail.chmod(0o755)
    fakes = tmp / "bin"
    fakes.mkdir()
    (fakes / "dpkg-query").write_text(FAKE_DPKG_QUERY)
    for name in ("apt-get", "debconf-set-selections", "sudo"):
        (fakes / name).write_text(RECORDER)
    for fake in fakes.iterdir():
        fake.chmod(0o755)
    log = tmp / "calls.log"
    result = subprocess.run(
        ["sh", str(work / "scripts" / "install-test-deps.sh")],
        env={"PATH": f"{fakes}:/usr/bin:/bin", "INSTALLED": installed, "LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return (log.read_text() if log.exists() else ""), result.stderr


def installs(calls: str) -> list[list[str]]:
    return [line.split() for line in calls.splitlines() if " install " in f" {line} "]


def test_another_mta_is_never_replaced_by_postfix(tmp_path: Path) -> None:
    calls, stderr = run_script(tmp_path, "exim4-daemon-light mail-transport-agent")
    assert installs(calls), calls
    for argv in installs(calls):
        assert "postfix" not in argv and "--no-remove" in argv, argv
    assert stderr.strip().splitlines() == [
        "install-test-deps.sh: not installing postfix: it would replace this machine's MTA (exim4-daemon-light)"
    ]


def test_without_an_mta_postfix_is_installed(tmp_path: Path) -> None:
    calls, stderr = run_script(tmp_path, "")
    assert any("postfix" in argv for argv in installs(calls)), calls
    assert all("--no-remove" in argv for argv in installs(calls))
    assert "not installing postfix" not in stderr


def test_an_installed_postfix_is_kept_and_not_reinstalled(tmp_path: Path) -> None:
    calls, stderr = run_script(tmp_path, "postfix mail-transport-agent")
    assert not any("postfix" in argv for argv in installs(calls)), calls
    assert "not installing postfix" not in stderr
