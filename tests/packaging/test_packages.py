"""The deb and the rpm as files: what they hold, checked without installing.

Nothing here installs or removes a package on this machine (a site's own
miltrd and its edited /etc/mail/miltrd.toml stay as they are): the deb is
unpacked into a temporary directory, and installed only inside the
container of test_systemd.py. The rpm is built as a source rpm here (a
Fedora/EL binary package is built on Fedora/EL) and checked with rpm's and
rpmspec's queries.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..tools import require
from .conftest import REPO, SYSTEM

pytestmark = pytest.mark.integration


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=SYSTEM, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def unpacked(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deb")
    run("dpkg-deb", "-x", str(deb), str(root))
    return root


def test_deb_holds_the_program_config_units_and_man_pages(deb: Path, unpacked: Path) -> None:
    for path in (
        "usr/bin/miltrd",
        "usr/lib/python3/dist-packages/miltrd/plugins/spf.py",
        "etc/mail/miltrd.toml",
        "lib/systemd/system/miltrd.service",
        "lib/systemd/system/miltrd.socket",
        "usr/lib/tmpfiles.d/miltrd.conf",
        "usr/share/man/man8/miltrd.8.gz",
        "usr/share/man/man5/miltrd.toml.5.gz",
        "usr/share/doc/miltrd/README.md.gz",
    ):
        assert (unpacked / path).exists(), path
    assert run("dpkg-deb", "-f", str(deb), "Depends").count("python3-spf") == 1
    conffiles = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True
    ).stdout
    assert b"/etc/mail/miltrd.toml" in conffiles


# Each runtime dependency of pyproject.toml and the Debian package that provides it.
DEBIAN_NAMES = {
    "tomli": "python3-tomli",
    "pyspf": "python3-spf",
    "dnspython": "python3-dnspython",
    "dkimpy": "python3-dkim",
    "pynacl": "python3-nacl",
    "cryptography": "python3-cryptography",
    "publicsuffix2": "python3-publicsuffix2",
    "prometheus-client": "python3-prometheus-client",
    "uvloop": "python3-uvloop",
}


def test_deb_depends_on_a_debian_package_for_every_python_dependency(deb: Path) -> None:
    """A PyPI-only module would install from the deb and fail when a plugin loads
    (the dmarc plugin did, with publicsuffixlist): each one needs a Debian package,
    named in Depends; the Public Suffix List file comes with publicsuffix."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert names <= DEBIAN_NAMES.keys(), (
        f"no Debian package known for {names - DEBIAN_NAMES.keys()}"
    )
    depends = {
        alt.split("(")[0].strip()
        for item in run("dpkg-deb", "-f", str(deb), "Depends").split(",")
        for alt in item.split("|")
    }
    for name in names:
        assert DEBIAN_NAMES[name] in depends, (name, depends)
    assert "publicsuffix" in depends, depends
    # That each exists in bookworm is shown by test_systemd.py: its container
    # root is made by apt-get installing every Depends from the archive.


def test_every_documentation_link_of_the_units_is_shipped(unpacked: Path) -> None:
    pages = {"man": "usr/share/man/man{section}/{name}.{section}.gz"}
    for unit in ("miltrd.service", "miltrd.socket"):
        text = (unpacked / "lib/systemd/system" / unit).read_text()
        links = [
            link
            for line in re.findall(r"^Documentation=(.*)$", text, re.M)
            for link in line.split()
        ]
        assert links, unit
        for link in links:
            m = re.fullmatch(r"man:([\w.-]+)\((\d)\)", link)
            if m:
                assert (unpacked / pages["man"].format(name=m[1], section=m[2])).exists(), link
            else:
                assert link.startswith("file:/") and (unpacked / link[6:]).exists(), link


def test_man_pages_say_what_help_and_the_sample_config_say(unpacked: Path) -> None:
    require("man")
    env = {**SYSTEM, "MANWIDTH": "200"}

    def page(name: str) -> str:
        out = subprocess.run(
            ["man", "-l", str(unpacked / name)], capture_output=True, text=True, env=env, check=True
        ).stdout
        return re.sub(r".\x08", "", out)

    miltrd8 = page("usr/share/man/man8/miltrd.8.gz")
    for command in ("run", "check", "replay", "stats", "version"):
        assert f"miltrd {command} [-h]" in miltrd8
    for option in ("--client-ip", "--connect", "--output", "--top", "MILTRD_CONFIG", "SIGHUP"):
        assert option in miltrd8
    toml5 = " ".join(page("usr/share/man/man5/miltrd.toml.5.gz").split())
    sample = (REPO / "etc" / "miltrd.toml").read_text()
    for line in sample.splitlines():
        if line.strip():
            assert " ".join(line.split()) in toml5, line


def test_unit_is_hardened_and_socket_dir_survives_restarts(unpacked: Path) -> None:
    require("systemd-analyze")
    unit = unpacked / "lib/systemd/system/miltrd.service"
    text = unit.read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=miltrd",
        "ProtectSystem=strict",
    ):
        assert line in text
    # A RuntimeDirectory is deleted on every stop, with the socket miltrd.socket listens on.
    assert not re.search(r"^RuntimeDirectory", text, re.M)
    socket = (unpacked / "lib/systemd/system/miltrd.socket").read_text()
    listen = re.search(r"^ListenStream=(.*)$", socket, re.M)[1]
    assert listen == "/var/spool/postfix/miltrd/miltrd.sock"
    tmpfiles = (unpacked / "usr/lib/tmpfiles.d/miltrd.conf").read_text()
    assert re.search(r"^d /var/spool/postfix/miltrd\s+0750 miltrd miltrd", tmpfiles, re.M)
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        env=SYSTEM,
    ).stdout
    level = re.search(r"Overall exposure level for miltrd.service: ([\d.]+)", security)
    assert level and float(level[1]) <= 2.0, security


def test_rpm_is_built_on_fedora_from_the_distributions_python_macros(
    built: dict[str, Path],
) -> None:
    srpm = str(built["srpm"])
    spec = REPO / "packaging" / "rpm" / "miltrd.spec"
    build_requires = run("rpm", "-qpR", srpm).split("\n")
    for needed in ("python3-devel", "pyproject-rpm-macros", "systemd-rpm-macros"):
        assert needed in build_requires
    # Nothing pins the Python of the host the spec was read on.
    requires = run("rpmspec", "-q", "--requires", str(spec)) + "\n".join(build_requires)
    # The Python modules are generated from pyproject.toml at build time; the
    # Public Suffix List file the dmarc plugin reads is Fedora/EL's package.
    assert "publicsuffix-list" in requires.split("\n"), requires
    assert "python(abi)" not in requires and "3.11" not in requires, requires
    parsed = run("rpmspec", "-P", str(spec))
    for macro in (
        "%pyproject_buildrequires",
        "%pyproject_wheel",
        "%pyproject_install",
        "%pyproject_save_files miltrd",
        "%files -f %{pyproject_files}",
    ):
        assert macro in parsed, macro
    assert "python3.11" not in parsed and "site-packages" not in parsed
    sources = run("rpm", "-qpl", srpm).split()
    assert len(sources) == 2 and "miltrd.spec" in sources, sources
    assert run("rpmspec", "-q", "--srpm", "--qf", "%{name}\n", str(spec)).strip() == "miltrd"
    scripts = spec.read_text()
    assert "%config(noreplace) %{_sysconfdir}/mail/miltrd.toml" in scripts
    assert "%systemd_post miltrd.service miltrd.socket" in scripts


def test_build_sh_rpm_says_where_a_fedora_package_is_built(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(REPO / "packaging" / "build.sh"), "rpm"],
        capture_output=True,
        text=True,
        env=SYSTEM,
        timeout=600,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    if Path("/usr/bin/dnf").exists() or Path("/etc/fedora-release").exists():
        pytest.skip("on Fedora/EL build.sh rpm builds the binary package")
    assert "a Fedora/EL package is built on Fedora/EL" in result.stderr
    assert "rpmbuild --rebuild" in result.stderr
