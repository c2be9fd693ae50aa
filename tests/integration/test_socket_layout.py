"""The shipped unix-socket layout, served to a real Postfix and a real Sendmail.

The packages make /var/spool/postfix/miltrd (miltrd:miltrd 0750) inside
Postfix's root-owned queue directory, and miltrd makes its socket there
(``socket_mode = "0660"``, group miltrd); the README tells the site to
run ``usermod -aG miltrd postfix``. Here one private Postfix's queue
directory stands for /var/spool/postfix: its ``miltrd`` directory and the
socket get the same owners and modes, the postinst's miltrd user and the
README's usermod line are applied to copies of the account files that only
this test's processes see (see ``Accounts``; the machine's own accounts
are not changed), and miltrd is started as root with the README's socket
block (``user = "miltrd"``). Then:

- Postfix, smtpd chrooted as Debian runs it, reaches the socket as the
  README's ``unix:miltrd/miltrd.sock``. Before the usermod line it is
  refused (Permission denied: mail gets 4xx, nothing reaches miltrd); after
  it and ``postfix reload``, its smtpd holds group miltrd (Postfix's
  daemons take the postfix user's groups with initgroups) and a message is
  filtered and delivered.
- Sendmail, at the socket the README's INPUT_MAIL_FILTER line names
  (running as root, with its "unsafe socket" checks on every directory up
  to /), filters and delivers through the same socket; made
  group-writable, the directory is refused (F=T: 4xx) until it is put back.
- The postfix user with group miltrd may connect; the same user without
  it, and nobody, get EACCES.
"""

from __future__ import annotations

import errno
import os
import re
import smtplib
import stat
import subprocess
from pathlib import Path

import pytest

from ..tools import require
from .mta import (
    POSTFIX,
    SENDMAIL_BIN,
    SMTP_SINK,
    Accounts,
    Miltrd,
    Postfix,
    Sendmail,
    Sink,
    running,
    world_readable_tmpdir,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
STOCK_QUEUE = "/var/spool/postfix"

# A connect(2) by whoever runs it, with the system's python (the test's own
# interpreter may be in a directory only root can read).
PROBE = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(exc.errno)
else:
    print(0)
"""


def block_after(heading: str, lang: str = "") -> str:
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(README, README.index(heading))
    assert m, f"no ```{lang} block after {heading!r} in README.md"
    return m.group(1)


def connect_as(sock: Path, argv_prefix: list[str], **popen: object) -> int:
    """errno of connecting to ``sock`` as the given user (0: connected)."""
    result = subprocess.run(
        [*argv_prefix, "/usr/bin/python3", "-c", PROBE, str(sock)],
        capture_output=True,
        text=True,
        timeout=30,
        **popen,  # type: ignore[arg-type]
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def groups_of(pid: str) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Groups:"):
            return {int(g) for g in line.split()[1:]}
    return set()


def smtpd_pids(conf: Path) -> list[str]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            environ = Path(f"/proc/{pid}/environ").read_text(errors="replace")
        except OSError:
            continue
        if comm == "smtpd" and f"MAIL_CONFIG={conf}" in environ:
            pids.append(pid)
    return pids


def send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.sendmail(
            "root@example.com",
            ["bob@example.com"],
            f"From: root@example.com\r\nSubject: {subject}\r\n\r\nhi\r\n".encode(),
        )


def test_shipped_socket_layout_with_postfix_sendmail_and_the_group_advice() -> None:
    require(POSTFIX, SMTP_SINK, "script", str(SENDMAIL_BIN), "m4", "unshare", "runuser")
    require("useradd", "usermod", "/usr/bin/python3")
    if os.geteuid() != 0:
        pytest.skip("needs root: sockets owned by another user, mount namespaces")
    main_cf = block_after("In `/etc/postfix/main.cf`")
    socket_toml = block_after("### The unix socket", "toml")
    group_advice = block_after("### The unix socket", "sh").strip()
    assert re.fullmatch(r"usermod -aG miltrd postfix", group_advice), group_advice
    sendmail_line = block_after("## Pointing Sendmail at miltrd")
    sendmail_socket = re.search(r"S=local:([^,]+),", sendmail_line)[1]
    listen = re.search(r'^listen = \["local:([^"]+)"\]$', socket_toml, re.M)[1]
    assert sendmail_socket == listen == f"{STOCK_QUEUE}/miltrd/miltrd.sock"

    with world_readable_tmpdir() as base:
        accounts = Accounts(base / "accounts")
        # What the packages' postinst makes when the machine has no miltrd user.
        if not accounts.has_user("miltrd"):
            accounts.run(
                "useradd --system --user-group --no-create-home --home-dir /var/spool/miltrd"
                " --shell /usr/sbin/nologin miltrd"
            )
        if "postfix" in accounts.members("miltrd"):  # this machine's site did it already
            accounts.run("usermod --remove -G miltrd postfix")
        uid, gid = accounts.ids("miltrd")
        assert gid == accounts.gid("miltrd")

        sink = Sink(base / "sink")
        milter = re.search(r"^smtpd_milters = (.*)$", main_cf, re.M)[1]
        postfix = Postfix(
            base / "pf", milter, sink.port, extra=main_cf, chroot=True, wrap=accounts.wrap
        )
        with running(sink, postfix):
            queue = base / "pf" / "queue"  # stands for /var/spool/postfix
            sockdir = queue / "miltrd"
            sockdir.mkdir()
            os.chown(sockdir, uid, gid)  # the postinst's install -d -m 0750 -o miltrd -g miltrd
            sockdir.chmod(0o750)
            sock = sockdir / "miltrd.sock"
            cfg = base / "miltrd.toml"
            cfg.write_text(socket_toml.replace(STOCK_QUEUE, str(queue)))
            miltrd = Miltrd(cfg, unix_path=str(sock), wrap=accounts.wrap)
            with running(miltrd):
                st = sock.stat()
                assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o660)
                # Root-owned and not group or world writable all the way up.
                for parent in sockdir.parents:
                    pst = parent.stat()
                    assert pst.st_uid == 0 and not pst.st_mode & 0o022, parent

                # Before the README's usermod, Postfix's user may not connect:
                # the file system refuses it, and mail waits (4xx).
                with pytest.raises(smtplib.SMTPException) as refused:
                    send(postfix.smtp_port, "not yet")
                assert 400 <= getattr(refused.value, "smtp_code", 0) < 500, refused.value
                assert "miltrd/miltrd.sock: Permission denied" in postfix.log()
                assert "summary" not in miltrd.log()

                accounts.run(group_advice)
                postfix.reload()
                send(postfix.smtp_port, "via postfix")
                assert b"Subject: via postfix" in sink.delivered("via postfix")
                assert miltrd.wait_log("summary").count("from=<root@example.com>") == 1
                pids = smtpd_pids(postfix.conf)
                assert pids and all(gid in groups_of(pid) for pid in pids), pids
                assert {os.readlink(f"/proc/{pid}/root") for pid in pids} == {str(queue)}

                sendmail = Sendmail(
                    base / "sm",
                    f"local:{sendmail_socket.replace(STOCK_QUEUE, str(queue))}",
                    sink.port,
                )
                with running(sendmail):
                    send(sendmail.smtp_port, "via sendmail")
                    assert b"Subject: via sendmail" in sink.delivered("via sendmail")
                    assert miltrd.wait_log("summary", count=2)
                    # Sendmail's own check, not a formality: a group-writable
                    # directory on the way is refused (F=T: try again later).
                    sockdir.chmod(0o770)
                    try:
                        with pytest.raises(smtplib.SMTPException) as refused:
                            send(sendmail.smtp_port, "unsafe")
                        code = getattr(refused.value, "smtp_code", 0)
                        assert 400 <= code < 500, refused.value
                    finally:
                        sockdir.chmod(0o750)
                    send(sendmail.smtp_port, "safe again")
                    assert b"Subject: safe again" in sink.delivered("safe again")

                # The group is what lets the MTA's user in, and no one else.
                assert connect_as(sock, [*accounts.wrap, "runuser", "-u", "postfix", "--"]) == 0
                postfix_uid, postfix_gid = accounts.ids("postfix")
                without_group = {"user": postfix_uid, "group": postfix_gid, "extra_groups": []}
                assert connect_as(sock, [], **without_group) == errno.EACCES
                assert connect_as(sock, [*accounts.wrap, "runuser", "-u", "nobody", "--"]) == (
                    errno.EACCES
                )
