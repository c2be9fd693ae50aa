"""The README's Postfix and socket blocks, pasted as a site would, with smtpd chrooted.

The main.cf block goes into a private Postfix's main.cf as it stands in the
README; its master.cf runs smtpd chrooted in the queue directory, as
Debian's does. miltrd listens where the README's ``listen`` block says,
with /var/spool/postfix (the stock queue directory) read as this private
instance's queue directory. A message sent to smtpd passes through miltrd
(its summary line) and is delivered; with miltrd stopped, the block's
``milter_default_action`` keeps mail out (4xx), never unfiltered.

Here the socket's group is ``postfix``'s own group rather than ``miltrd``;
the README's group ``miltrd`` (``usermod -aG miltrd postfix``) with the
package's owners and modes, through Postfix and Sendmail, is
test_socket_layout.py's, and under systemd tests/packaging/test_systemd.py's.
"""

from __future__ import annotations

import grp
import os
import re
import smtplib
from pathlib import Path

import pytest

from ..tools import require
from .mta import POSTFIX, SMTP_SINK, Miltrd, Postfix, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
STOCK_QUEUE = "/var/spool/postfix"


def block_after(heading: str, lang: str = "") -> str:
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(README, README.index(heading))
    assert m, f"no ```{lang} block after {heading!r} in README.md"
    return m.group(1)


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _environ_has(pid: str, text: str) -> bool:
    try:
        # Postfix's daemons get the instance's config directory as MAIL_CONFIG.
        return text in Path(f"/proc/{pid}/environ").read_text(errors="replace")
    except OSError:
        return False


def test_main_cf_block_is_what_postfix_takes() -> None:
    block = block_after("In `/etc/postfix/main.cf`")
    for line in block.splitlines():
        # Postfix has no end-of-line comments: "# ..." would become part of the value.
        assert "#" not in line, line
        assert re.fullmatch(r"[a-z_]+ = \S.*", line), line


def test_readme_postfix_and_socket_blocks_with_chrooted_smtpd() -> None:
    require(POSTFIX, SMTP_SINK, "script")
    main_cf = block_after("In `/etc/postfix/main.cf`")
    socket_toml = block_after("### The unix socket", "toml")
    with world_readable_tmpdir() as base:
        sink = Sink(base / "sink")
        milter = re.search(r"^smtpd_milters = (.*)$", main_cf, re.M)[1]
        postfix = Postfix(base / "pf", milter, sink.port, extra=main_cf, chroot=True)
        queue = base / "pf" / "queue"
        sockdir = queue / "miltrd"
        sockdir.mkdir()
        postfix_gid = grp.getgrnam("postfix").gr_gid
        os.chown(sockdir, 0, postfix_gid)
        sockdir.chmod(0o750)
        # The sample config, listening as the README's block says.
        sample = (REPO / "etc" / "miltrd.toml").read_text()
        listen = re.search(r"^listen = .*$", socket_toml, re.M)[0]
        assert STOCK_QUEUE in listen
        config = re.sub(
            r"^listen = .*$", listen.replace(STOCK_QUEUE, str(queue)), sample, count=1, flags=re.M
        )
        mode = re.search(r"^socket_mode = .*$", socket_toml, re.M)[0]
        config = re.sub(r"^socket_mode = .*$", mode, config, count=1, flags=re.M)
        cfg = base / "miltrd.toml"
        cfg.write_text(config)
        sock = sockdir / "miltrd.sock"
        miltrd = Miltrd(cfg, unix_path=str(sock))
        os.chown(sock, 0, postfix_gid)  # stands in for group miltrd, see above
        with running(sink, postfix):
            try:
                assert oct(sock.stat().st_mode & 0o777) == "0o660"
                with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
                    smtp.sendmail(
                        "root@example.com",
                        ["bob@example.com"],
                        b"From: root@example.com\r\nSubject: readme chroot\r\n\r\nhi\r\n",
                    )
                delivered = sink.delivered("readme chroot")
                assert b"Subject: readme chroot" in delivered
                assert "from=<root@example.com>" in miltrd.wait_log("summary")
                # The smtpd that served it (idle now, waiting for the next client) is chrooted.
                roots = {
                    os.readlink(f"/proc/{pid}/root")
                    for pid in os.listdir("/proc")
                    if pid.isdigit() and _comm(pid) == "smtpd" and _environ_has(pid, str(base))
                }
                assert roots == {str(queue)}, roots
            finally:
                miltrd.stop()
            # miltrd down: the block's milter_default_action refuses for now.
            with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
                smtp.ehlo("client.test")
                codes = [smtp.mail("root@example.com")[0], smtp.rcpt("bob@example.com")[0]]
                assert any(400 <= code < 500 for code in codes), codes
