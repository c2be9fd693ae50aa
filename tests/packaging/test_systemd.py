"""The deb under a real systemd: a Debian 12 container booted with systemd-nspawn.

What a site does with the package, in order: install it (enabled, started,
READY honoured), switch to socket activation and reboot, let an MTA user
in group miltrd trigger activation, restart and stop the service and crash
it while miltrd.socket listens, upgrade with an edited config, remove and
purge. Each step is checked as the administrator would see it (systemctl,
the socket file, a milter session through it).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..tools import require
from .container import REPO, Container

pytestmark = pytest.mark.integration
SOCKET = "/var/spool/postfix/miltrd/miltrd.sock"
MAIL = "From: root@example.com\nSubject: hello\n\nhi\n"


@pytest.fixture(scope="module")
def box(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    require("/usr/sbin/debootstrap", "/usr/bin/systemd-nspawn", "/usr/bin/nsenter")
    if os.geteuid() != 0:
        pytest.skip("booting a container needs root")
    dist = tmp_path_factory.mktemp("dist")
    shutil.copy(deb, dist / "miltrd.deb")
    shutil.copy(deb, dist / deb.name)  # as the README's apt-get line names it
    container = Container(tmp_path_factory.mktemp("container"), {dist: "/dist"})
    try:
        container.boot()
        # The MTA's user (Postfix's; no Postfix here), and a user who is nobody's MTA.
        container.run("useradd", "--system", "postfix")
        container.run("useradd", "--system", "stranger")
        container.sh(f"printf '{MAIL}' > /mail.eml && chmod 0644 /mail.eml")
        yield container
    finally:
        container.remove()


def milter_session(box: Container, user: str) -> str:
    """One message through the socket as ``user`` would send it (miltrd replay --connect)."""
    result = box.run(
        *("miltrd", "replay", "/mail.eml", "--connect", f"unix:{SOCKET}"),
        *("--client-ip", "127.0.0.1", "--from", "root@example.com", "--rcpt", "bob@example.com"),
        user=user,
        check=False,
    )
    return result.stdout + result.stderr


def active(box: Container, unit: str) -> str:
    return box.run("systemctl", "is-active", unit, check=False).stdout.strip()


def wait_active(box: Container, unit: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while active(box, unit) != "active":
        assert time.monotonic() < deadline, box.sh(
            f"systemctl status {unit}; journalctl -u {unit}", check=False
        )
        time.sleep(0.5)


def test_install_enables_and_starts_the_service(box: Container) -> None:
    """The README's Debian steps, pasted in a shell in the project directory (here /)."""
    steps = readme_block("Debian / Ubuntu:", "sh").splitlines()
    install, edit, reload, logs = steps[:4]
    assert install.startswith("apt-get install ./dist/miltrd_"), install
    box.sh(f"cd / && {install}")
    wait_active(box, "miltrd.service")  # Type=notify: active only after READY=1
    # editor: Debian's /usr/bin/editor, here one that saves the file as it is.
    box.sh("printf '#!/bin/sh\\nexit 0\\n' > /usr/bin/editor && chmod +x /usr/bin/editor")
    assert box.sh(edit).startswith("/etc/mail/miltrd.toml: OK")
    box.sh(reload)
    assert "reload" in box.sh(logs).lower()
    wait_active(box, "miltrd.service")
    assert box.run("systemctl", "is-enabled", "miltrd.service").stdout.strip() == "enabled"
    # The socket unit is there for sites that want it, off by default.
    assert (
        box.run("systemctl", "is-enabled", "miltrd.socket", check=False).stdout.strip()
        == "disabled"
    )
    assert box.run("miltrd", "check", "-c", "/etc/mail/miltrd.toml").stdout.startswith(
        "/etc/mail/miltrd.toml: OK"
    )
    where = box.run("python3", "-c", "import miltrd; print(miltrd.__file__)").stdout
    assert where.startswith("/usr/lib/python3/dist-packages/miltrd/")
    # Users, conffile, directories.
    assert (
        "/etc/mail/miltrd.toml" in box.run("dpkg-query", "-W", "-f=${Conffiles}", "miltrd").stdout
    )
    assert box.run("getent", "passwd", "miltrd").stdout.strip().endswith("nologin")
    modes = box.sh(
        "stat -c '%n %U:%G %a' /var/spool/miltrd /var/spool/miltrd/archive"
        " /var/spool/miltrd/quarantine /var/spool/postfix/miltrd /etc/mail/miltrd.toml"
    ).splitlines()
    assert modes == [
        "/var/spool/miltrd miltrd:miltrd 750",
        "/var/spool/miltrd/archive miltrd:miltrd 750",
        "/var/spool/miltrd/quarantine miltrd:miltrd 750",
        "/var/spool/postfix/miltrd miltrd:miltrd 750",
        "/etc/mail/miltrd.toml root:miltrd 640",
    ]
    # The unit's documentation is installed, and the hardening holds in a real systemd.
    docs = box.run("systemctl", "show", "-p", "Documentation", "--value", "miltrd.service").stdout
    assert docs.replace('"', "").split() == ["man:miltrd(8)", "man:miltrd.toml(5)"]
    box.run("test", "-f", "/usr/share/man/man8/miltrd.8.gz")
    box.run("test", "-f", "/usr/share/man/man5/miltrd.toml.5.gz")
    security = box.run("systemd-analyze", "security", "miltrd.service", check=False).stdout
    level = re.search(r"Overall exposure level for miltrd.service: ([\d.]+)", security)
    assert level and float(level[1]) <= 2.0, security


AUTH_CONFIG = """[internal]
networks = []
authserv_id = "mx.example.com"
[chain]
plugins = ["dkim", "dmarc"]
[[plugins.dkim.keys]]
domain = "example.com"
selector = "ed1"
key_file = "/etc/mail/ed1.private"
algorithm = "ed25519-sha256"
[plugins.dmarc]
nameservers = ["127.0.0.1:53"]
"""


def test_dkim_and_dmarc_run_from_the_deb_with_debians_suffix_list(box: Container) -> None:
    """The deb's Depends bring what the dkim and dmarc plugins import (Debian's
    python3-dkim and python3-publicsuffix2, no PyPI-only module) and the
    Public Suffix List file; the Organizational Domains come from that file."""
    box.run("miltrd", "dkim", "genkey", "example.com", "ed1", "-a", "ed25519", "-D", "/etc/mail")
    box.sh("chown miltrd /etc/mail/ed1.private")
    box.sh(f"cat > /etc/mail/auth.toml <<'EOF'\n{AUTH_CONFIG}EOF")
    out = box.run("miltrd", "check", "-c", "/etc/mail/auth.toml").stdout
    assert out.startswith("/etc/mail/auth.toml: OK"), out
    assert "signs example.com with selector ed1 (ed25519-sha256" in out, out
    assert re.search(
        r"public suffix list: /usr/share/publicsuffix/public_suffix_list.dat \(\d+ rules", out
    ), out
    owner = box.run("dpkg", "-S", "/usr/share/publicsuffix/public_suffix_list.dat").stdout
    assert owner.startswith("publicsuffix:"), owner
    lookups = box.run(
        "python3",
        "-c",
        "from miltrd.plugins import _psl\n"
        "psl = _psl.load(_psl.SYSTEM_PSL)\n"
        "print(psl._psl.__class__.__module__)\n"
        "for d in ('a.b.example.org', 'mail.example.co.uk', 'co.uk', 'a.www.ck', 'x.b.ck'):\n"
        "    print(d, psl.org_domain(d))",
    ).stdout.splitlines()
    assert lookups == [
        "publicsuffix2",
        "a.b.example.org example.org",
        "mail.example.co.uk example.co.uk",
        "co.uk co.uk",
        "a.www.ck www.ck",
        "x.b.ck x.b.ck",
    ]
    where = box.run("python3", "-c", "import publicsuffix2; print(publicsuffix2.__file__)").stdout
    assert where.startswith("/usr/lib/python3/dist-packages/"), where


def readme_block(after: str, lang: str) -> str:
    """The first ```lang block after the text ``after`` in README.md."""
    readme = (REPO / "README.md").read_text()
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(readme, readme.index(after))
    assert m, f"no {lang} block after {after!r} in README.md"
    return m.group(1)


def test_readme_socket_set_up_with_the_hardened_unit(box: Container) -> None:
    """The README's unix-socket steps, pasted: the group, then the listen line."""
    section = "### The unix socket"
    box.sh(readme_block(section, "sh"))
    assert "miltrd" in box.run("id", "-nG", "postfix").stdout.split()
    toml = readme_block(section, "toml")
    config = box.run("cat", "/etc/mail/miltrd.toml").stdout
    listen = re.search(r"^listen = .*$", toml, re.M)
    assert listen and "[daemon]" in toml
    config = re.sub(r"^listen = .*$", listen[0], config, count=1, flags=re.M)
    for line in toml.splitlines()[1:]:
        key = line.split("=")[0].strip()
        config = re.sub(rf"^{key} = .*$", line, config, count=1, flags=re.M)
        assert line in config
    box.sh(f"cat > /etc/mail/miltrd.toml <<'EOF'\n{config}EOF")
    box.run("systemctl", "restart", "miltrd.service")
    wait_active(box, "miltrd.service")
    # miltrd, confined by the unit, made the socket itself: postfix may connect, others not.
    assert box.sh(f"stat -c '%U:%G %a' {SOCKET}").strip() == "miltrd:miltrd 660"
    out = milter_session(box, "postfix")
    assert "verdict:" in out, out
    assert "Permission denied" in milter_session(box, "stranger")


def test_socket_activation_from_boot_for_the_mta_user(box: Container) -> None:
    box.run("systemctl", "disable", "--now", "miltrd.service")
    box.run("systemctl", "enable", "miltrd.socket")
    # A site's next boot: the socket listens before the service has ever run.
    box.reboot()
    assert active(box, "miltrd.socket") == "active"
    assert active(box, "miltrd.service") == "inactive"
    assert box.sh(f"stat -c '%U:%G %a' {SOCKET}").strip() == "miltrd:miltrd 660"
    out = milter_session(box, "postfix")
    assert "verdict:" in out, out
    wait_active(box, "miltrd.service")
    # Not in group miltrd: refused by the file system, not served.
    out = milter_session(box, "stranger")
    assert "verdict:" not in out and "Permission denied" in out, out


def test_restart_stop_and_crash_keep_the_socket(box: Container) -> None:
    wait_active(box, "miltrd.socket")
    box.run("systemctl", "restart", "miltrd.service")
    assert "verdict:" in milter_session(box, "postfix")

    box.run("systemctl", "stop", "miltrd.service")
    assert active(box, "miltrd.socket") == "active"
    box.run("test", "-S", SOCKET)
    assert "verdict:" in milter_session(box, "postfix")  # activates it again
    wait_active(box, "miltrd.service")

    pid = box.run("systemctl", "show", "-p", "MainPID", "--value", "miltrd.service").stdout.strip()
    box.run("systemctl", "kill", "--kill-who=main", "--signal=SIGKILL", "miltrd.service")
    deadline = time.monotonic() + 30
    while box.run(
        "systemctl", "show", "-p", "MainPID", "--value", "miltrd.service"
    ).stdout.strip() in (pid, "0"):
        assert time.monotonic() < deadline, box.sh("journalctl -u miltrd", check=False)
        time.sleep(0.5)
    box.run("test", "-S", SOCKET)
    assert "verdict:" in milter_session(box, "postfix")


def test_upgrade_keeps_the_sites_config(box: Container) -> None:
    box.sh("sed -i 's/^max_connections = 512/max_connections = 77/' /etc/mail/miltrd.toml")
    assert "max_connections = 77" in box.run("cat", "/etc/mail/miltrd.toml").stdout
    box.run("dpkg", "--force-confold", "-i", "/dist/miltrd.deb")
    assert "max_connections = 77" in box.run("cat", "/etc/mail/miltrd.toml").stdout
    assert "verdict:" in milter_session(box, "postfix")


def test_remove_stops_the_socket_and_purge_forgets_it(box: Container) -> None:
    wants = "/etc/systemd/system/sockets.target.wants/miltrd.socket"
    box.run("test", "-L", wants)
    box.run("apt-get", "remove", "-y", "-q", "miltrd")
    assert active(box, "miltrd.socket") == "inactive"
    assert active(box, "miltrd.service") == "inactive"
    box.run("test", "!", "-e", SOCKET)
    box.run("test", "-f", "/etc/mail/miltrd.toml")  # remove keeps the config

    box.run("apt-get", "purge", "-y", "-q", "miltrd")
    for gone in (wants, "/etc/mail/miltrd.toml", "/usr/bin/miltrd", "/var/spool/postfix/miltrd"):
        box.run("test", "!", "-e", gone, "-a", "!", "-L", gone)
    units = box.run("systemctl", "list-unit-files", "miltrd.*", "--no-legend", check=False).stdout
    assert units.strip() == ""
