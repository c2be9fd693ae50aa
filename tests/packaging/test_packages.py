"""The deb and the rpm, built from this checkout with packaging/build.sh.

The deb is installed on this machine with apt-get (which pulls Debian's
python3-spf, python3-dnspython and python3-prometheus-client), checked as
an administrator would, and purged. The rpm is checked with rpm's queries.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..tools import require

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SYSTEM = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"}


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, env=SYSTEM, check=check, timeout=900, cwd="/"
    )


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    require(
        "/usr/bin/dpkg-buildpackage", "/usr/bin/dh", "/usr/bin/rpmbuild", "/usr/bin/systemd-analyze"
    )
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root")
    built = run(str(REPO / "packaging" / "build.sh"), check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    dist = REPO / "dist"
    yield {
        "deb": next(dist.glob("miltrd_*_all.deb")),
        "rpm": next(dist.glob("miltrd-*.noarch.rpm")),
    }


@pytest.fixture(scope="module")
def installed(packages: dict[str, Path]) -> Iterator[Path]:
    run("dpkg", "--purge", "miltrd", check=False)
    result = run("apt-get", "install", "-y", "-q", str(packages["deb"]), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield packages["deb"]
    finally:
        run("dpkg", "--purge", "miltrd", check=False)


def test_installed_command_checks_the_installed_config(installed: Path) -> None:
    result = run("/usr/bin/miltrd", "check", "-c", "/etc/mail/miltrd.toml")
    assert result.stdout.startswith("/etc/mail/miltrd.toml: OK")
    # The library lives in the system Python, not in a virtualenv.
    where = run("/usr/bin/python3", "-c", "import miltrd; print(miltrd.__file__)").stdout
    assert where.startswith("/usr/lib/python3/dist-packages/miltrd/")


def test_conffile_user_and_directories(installed: Path) -> None:
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "miltrd").stdout
    assert "/etc/mail/miltrd.toml" in conffiles
    user = pwd.getpwnam("miltrd")
    assert grp.getgrgid(user.pw_gid).gr_name == "miltrd"
    assert user.pw_shell.endswith("nologin")
    for d in ("/var/spool/miltrd", "/var/spool/miltrd/archive", "/var/spool/miltrd/quarantine"):
        st = os.stat(d)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, 0o750), d
    st = os.stat("/etc/mail/miltrd.toml")
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (user.pw_gid, 0o640)


def test_systemd_unit_verifies_and_is_hardened(installed: Path) -> None:
    unit = "/lib/systemd/system/miltrd.service"
    assert run("systemd-analyze", "verify", unit, check=False).returncode == 0
    security = run("systemd-analyze", "security", "--offline=true", unit, check=False).stdout
    score = float(re.search(r"Overall exposure level for miltrd.service: ([\d.]+)", security)[1])
    assert score <= 2.0, security
    text = Path(unit).read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=miltrd",
        "RuntimeDirectory=miltrd",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/spool/miltrd",
    ):
        assert line in text


def test_upgrade_keeps_the_sites_config_and_purge_removes_everything(installed: Path) -> None:
    config = Path("/etc/mail/miltrd.toml")
    config.write_text(config.read_text().replace("max_connections = 512", "max_connections = 77"))
    result = run("dpkg", "--force-confold", "-i", str(installed), check=False)
    assert result.returncode == 0, result.stderr
    assert "max_connections = 77" in config.read_text()
    run("dpkg", "--purge", "miltrd")
    assert not config.exists()
    assert not Path("/usr/bin/miltrd").exists()
    assert not Path("/usr/lib/python3/dist-packages/miltrd").exists()


def test_rpm_contents_config_and_scriptlets(packages: dict[str, Path]) -> None:
    rpm = str(packages["rpm"])
    files = run("rpm", "-qlp", rpm).stdout.split()
    for expected in (
        "/usr/bin/miltrd",
        "/usr/lib/systemd/system/miltrd.service",
        "/usr/lib/sysusers.d/miltrd.conf",
        "/usr/lib/tmpfiles.d/miltrd.conf",
        "/var/spool/miltrd/archive",
        "/var/spool/miltrd/quarantine",
    ):
        assert expected in files
    assert any(f.endswith("site-packages/miltrd/protocol/_filter.py") for f in files)
    assert any(f.endswith("site-packages/miltrd/plugins/spf.py") for f in files)
    assert run("rpm", "-qcp", rpm).stdout.split() == ["/etc/mail/miltrd.toml"]
    scripts = run("rpm", "-qp", "--scripts", rpm).stdout
    assert "useradd -r -g miltrd" in scripts
    assert "systemctl --no-reload preset miltrd.service miltrd.socket" in scripts
    assert "systemctl try-restart miltrd.service" in scripts
    requires = run("rpm", "-qpR", rpm).stdout
    assert "python3-pyspf" in requires and "python3-dns" in requires
