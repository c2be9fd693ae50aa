"""scripts/install-test-deps.sh never takes the machine's own MTA away.

The script runs with stand-ins for dpkg-query (what the machine has
installed), getent (which accounts exist), apt-get, dpkg-deb,
debconf-set-selections, groupadd and useradd (recording what they were
asked to do) first on PATH, on a copy of the scripts. With exim4 as the
machine's MTA it must not ask for postfix (which would remove exim4), must
say why in one line, and instead downloads Debian's postfix package and
unpacks it into .cache/postfix (as Sendmail always is), installs what it
links against, and makes the accounts it runs as; on a machine without an
MTA it installs postfix. Every install it asks for forbids removals
(--no-remove).
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

FAKE_APT_GET = """#!/bin/sh
echo "apt-get $*" >> "$LOG"
if [ "$1" = download ]; then
    shift
    for pkg; do : > "${pkg}_1.0_amd64.deb"; done
fi
"""

FAKE_DPKG_DEB = """#!/bin/sh
echo "dpkg-deb $*" >> "$LOG"
case "$1" in
  -x) mkdir -p "$3/usr/sbin" ;;
  -f) echo "libc6 (>= 2.34), libdb5.3, debconf (>= 0.5) | debconf-2.0, netbase, libssl3 (>= 3.0.0)" ;;
esac
"""

FAKE_GETENT = """#!/bin/sh
# $ACCOUNTS: the "passwd:name group:name" entries that exist
case " $ACCOUNTS " in *" $1:$2 "*) echo "$2:x:100:" ;; *) exit 2 ;; esac
"""


def run_script(tmp: Path, installed: str, accounts: str = "") -> tuple[str, str]:
    work = tmp / "proj"
    (work / "scripts").mkdir(parents=True)
    for script in ("install-test-deps.sh", "unpack-deb.sh"):
        shutil.copy(REPO / "scripts" / script, work / "scripts")
    sendmail = work / ".cache/sendmail/root/usr/libexec/sendmail/sendmail"
    sendmail.parent.mkdir(parents=True)
    sendmail.write_text("#!/bin/sh\n")
    sendmail.chmod(0o755)
    fakes = tmp / "bin"
    fakes.mkdir()
    (fakes / "dpkg-query").write_text(FAKE_DPKG_QUERY)
    (fakes / "apt-get").write_text(FAKE_APT_GET)
    (fakes / "dpkg-deb").write_text(FAKE_DPKG_DEB)
    (fakes / "getent").write_text(FAKE_GETENT)
    for name in ("debconf-set-selections", "sudo", "groupadd", "useradd"):
        (fakes / name).write_text(RECORDER)
    for fake in fakes.iterdir():
        fake.chmod(0o755)
    log = tmp / "calls.log"
    result = subprocess.run(
        ["sh", str(work / "scripts" / "install-test-deps.sh")],
        env={
            "PATH": f"{fakes}:/usr/bin:/bin",
            "INSTALLED": installed,
            "ACCOUNTS": accounts,
            "LOG": str(log),
        },
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
        "install-test-deps.sh: not installing postfix: it would replace this machine's MTA"
        " (exim4-daemon-light); the tests run it from .cache/postfix"
    ]


def test_with_another_mta_postfix_is_unpacked_beside_the_project(tmp_path: Path) -> None:
    calls, _ = run_script(tmp_path, "exim4-daemon-light mail-transport-agent")
    lines = calls.splitlines()
    assert "apt-get download postfix" in lines, calls
    deb = ".cache/postfix/debs.new/postfix_1.0_amd64.deb"
    assert f"dpkg-deb -x {deb} .cache/postfix/root.new" in lines, calls
    assert (tmp_path / "proj/.cache/postfix/root/usr/sbin").is_dir()
    assert not (tmp_path / "proj/.cache/postfix/root.new").exists()
    # What the unpacked tree links against, and only that, comes from apt.
    [argv] = [argv for argv in installs(calls) if "--no-install-recommends" not in argv]
    assert {"libdb5.3", "libssl3"} <= set(argv) and "libc6" in argv, argv
    assert not {"netbase", "debconf", "postfix"} & set(argv), argv
    # Postfix's daemons run as postfix; postdrop is its setgid group.
    assert "groupadd --system postdrop" in lines, calls
    assert any(
        line.startswith("useradd --system --user-group") and line.endswith(" postfix")
        for line in lines
    ), calls


def test_existing_postfix_accounts_are_left_alone(tmp_path: Path) -> None:
    calls, _ = run_script(
        tmp_path, "exim4-daemon-light mail-transport-agent", "passwd:postfix group:postdrop"
    )
    assert "apt-get download postfix" in calls.splitlines()
    assert "groupadd" not in calls and "useradd" not in calls, calls


def test_without_an_mta_postfix_is_installed(tmp_path: Path) -> None:
    calls, stderr = run_script(tmp_path, "")
    assert any("postfix" in argv for argv in installs(calls)), calls
    assert all("--no-remove" in argv for argv in installs(calls))
    assert "not installing postfix" not in stderr
    assert "useradd" not in calls  # the package makes its own accounts


def test_an_installed_postfix_is_kept_and_not_reinstalled(tmp_path: Path) -> None:
    calls, stderr = run_script(tmp_path, "postfix mail-transport-agent")
    assert not any("postfix" in argv for argv in installs(calls)), calls
    assert "not installing postfix" not in stderr
