"""Real peers for the integration tests: a private Postfix, smtp-sink, miltrd.

Postfix runs from Debian's package with its own config, queue and log in a
temporary directory, on loopback ports, never touching the system MTA. It
relays everything to smtp-sink, which writes one file per delivered
message. miltrd runs as a real subprocess (``python -m miltrd run``).

The package is the system's when it is installed; on a host running
another MTA (postfix would replace it) it is the one scripts/install-test-deps.sh
unpacks into .cache/postfix/root, run from there (``POSTFIX_ROOT``).
``MILTRD_TEST_POSTFIX=unpacked`` (or ``system``) chooses one explicitly.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..tools import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
POSTFIX_ROOT = REPO / ".cache" / "postfix" / "root"


def unpacked_postfix() -> Path | None:
    """The unpacked Postfix tree the tests run, or None for the system's package."""
    choice = os.environ.get("MILTRD_TEST_POSTFIX", "")
    if choice == "unpacked":
        return POSTFIX_ROOT
    if choice == "system" or Path("/usr/sbin/postfix").exists():
        return None
    return POSTFIX_ROOT


def postfix_tool(name: str) -> str:
    """The command ``name`` of the Postfix package (postfix, smtp-sink, smtp-source...)."""
    root = unpacked_postfix()
    return name if root is None else str(root / "usr/sbin" / name)


# For require(): what the tests will run, unless MILTRD_TEST_POSTFIX changes later.
POSTFIX = postfix_tool("postfix")
SMTP_SINK = postfix_tool("smtp-sink")


def _unpacked_main_cf(root: Path) -> str:
    """main.cf lines that run Postfix from the unpacked tree, never from /usr or /etc/postfix.

    The binaries find their libpostfix-*.so through RUNPATH /usr/lib/postfix;
    LD_LIBRARY_PATH comes first, and Postfix passes on only the environment
    import_environment names, so the tree's libraries reach every daemon.
    """
    shlib = root / "usr/lib/postfix"
    return (
        f"daemon_directory = {root}/usr/lib/postfix/sbin\n"
        f"command_directory = {root}/usr/sbin\n"
        f"shlib_directory = {shlib}\n"
        f"meta_directory = {root}/etc/postfix\n"
        f"sample_directory = {root}/etc/postfix\n"
        f"manpage_directory = {root}/usr/share/man\n"
        f"html_directory = no\n"
        f"readme_directory = no\n"
        f"sendmail_path = {root}/usr/sbin/sendmail\n"
        f"mailq_path = {root}/usr/bin/mailq\n"
        f"newaliases_path = {root}/usr/bin/newaliases\n"
        "import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C"
        f" POSTLOG_SERVICE POSTLOG_HOSTNAME LD_LIBRARY_PATH={shlib}\n"
    )


def postfix_env() -> dict[str, str]:
    root = unpacked_postfix()
    if root is None:
        return dict(os.environ)
    return dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/postfix"))


MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
myhostname = mta.test.example
mydomain = test.example
myorigin = test.example
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{sink_port}
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_milters = {milter}
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 10s
milter_command_timeout = 30s
milter_content_timeout = 60s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtpd_banner = $myhostname ESMTP test
biff = no
smtputf8_enable = no
"""


class Sink:
    """smtp-sink writing one file per message into ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                postfix_tool("smtp-sink"),
                "-u",
                "postfix",
                "-d",
                f"{directory}/%H%M%S.",
                f"127.0.0.1:{self.port}",
                "64",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=postfix_env(),
        )
        os.chown(directory, _uid("postfix"), -1)
        wait_for_port(self.port)

    def messages(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.directory.iterdir()) if p.is_file()]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[bytes]:
        """Wait until ``count`` messages were delivered (Postfix works on its own clock)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def delivered(self, subject: str, timeout: float = 30.0) -> bytes:
        """The delivered message with this Subject (Postfix delivers on its own clock)."""
        needle = f"Subject: {subject}".encode()
        deadline = time.monotonic() + timeout
        while True:
            for path in sorted(self.directory.iterdir()):
                if path.is_file() and needle in (raw := path.read_bytes()):
                    # smtp-sink writes the file as the message arrives:
                    # return it once it has stopped growing.
                    while True:
                        time.sleep(0.2)
                        again = path.read_bytes()
                        if again == raw:
                            return raw
                        raw = again
            if time.monotonic() > deadline:
                raise AssertionError(f"{subject!r} was not delivered within {timeout:.0f}s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


class Postfix:
    def __init__(
        self,
        base: Path,
        milter: str,
        sink_port: int,
        extra: str = "",
        chroot: bool = False,
        wrap: Sequence[str] = (),
    ) -> None:
        """``chroot``: smtpd runs chrooted in the queue directory, as Debian's master.cf has it.

        ``wrap``: a command prefix the postfix command runs under (Accounts.wrap).
        """
        self.base = base
        self.wrap = list(wrap)
        self.conf = base / "conf"
        self.conf.mkdir(parents=True)
        (base / "queue").mkdir()
        (base / "data").mkdir()
        os.chown(base / "data", _uid("postfix"), -1)
        self.smtp_port = free_port()
        root = unpacked_postfix()
        tree = "" if root is None else _unpacked_main_cf(root)
        (self.conf / "main.cf").write_text(
            MAIN_CF.format(base=base, sink_port=sink_port, milter=milter) + tree + extra
        )
        master = MASTER_CF.format(smtp_port=self.smtp_port)
        if chroot:
            smtpd = f"127.0.0.1:{self.smtp_port} inet n - n - - smtpd"
            assert smtpd in master
            master = master.replace(smtpd, f"127.0.0.1:{self.smtp_port} inet n - y - - smtpd")
        (self.conf / "master.cf").write_text(master)
        self._postfix("start")
        wait_for_port(self.smtp_port, timeout=30)

    def _postfix(self, action: str) -> None:
        # Postfix reports start-up errors only to a tty or syslog.
        result = subprocess.run(
            [
                "script",
                "-qec",
                shlex.join([*self.wrap, postfix_tool("postfix"), "-c", str(self.conf), action]),
                "/dev/null",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=postfix_env(),
        )
        if result.returncode != 0:
            log = self.log()
            raise RuntimeError(f"postfix {action} failed:\n{result.stdout}{result.stderr}\n{log}")

    def reload(self) -> None:
        self._postfix("reload")

    def log(self) -> str:
        path = self.base / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._postfix("stop")


class Miltrd:
    """``python -m miltrd run`` as a subprocess, with its stderr kept."""

    def __init__(
        self,
        config: Path,
        port: int | None = None,
        unix_path: str | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        """``wrap``: a command prefix miltrd runs under (Accounts.wrap)."""
        self.config = config
        self.log_path = config.with_suffix(".log")
        self.logfile = open(self.log_path, "wb")  # noqa: SIM115
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", "miltrd", "run", "-c", str(config)],
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        if port is not None:
            deadline = time.monotonic() + 20
            while True:
                try:
                    wait_for_port(port, timeout=0.2)
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"miltrd did not start:\n{self.log()}") from None
        elif unix_path is not None:
            # The file appears at bind(), before listen(): wait until it answers.
            deadline = time.monotonic() + 20
            while not _unix_answers(unix_path):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"miltrd did not start:\n{self.log()}")
                time.sleep(0.05)

    def log(self) -> str:
        if not self.logfile.closed:
            self.logfile.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_log(self, text: str, timeout: float = 10.0, count: int = 1) -> str:
        """Wait until ``text`` was logged ``count`` times (a process's own clock)."""
        deadline = time.monotonic() + timeout
        while (log := self.log()).count(text) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout}s:\n{log}")
            time.sleep(0.05)
        return log

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfile.close()
        return self.proc.returncode


def _unix_answers(path: str) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


@contextlib.contextmanager
def running(*things: object) -> Iterator[None]:
    try:
        yield
    finally:
        for thing in reversed(things):
            with contextlib.suppress(Exception):
                thing.stop()  # type: ignore[attr-defined]


@contextlib.contextmanager
def world_readable_tmpdir() -> Iterator[Path]:
    """A temp dir the postfix user can reach (pytest's own are mode 0700)."""
    import shutil
    import tempfile

    # Not under /tmp: Sendmail refuses a milter socket below a world-writable
    # directory, as it should. /run is root's and 0755.
    parent = "/run" if os.access("/run", os.W_OK) else str(REPO / ".cache")
    os.makedirs(parent, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="miltrd-it-", dir=parent))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Accounts:
    """The machine's users and groups as a site would have them, seen only by chosen processes.

    Copies of /etc/passwd, /etc/group, /etc/shadow and /etc/gshadow, changed
    with the shadow tools' --prefix (the machine's own files are never
    written); ``wrap`` is a command prefix that runs a command in a private
    mount namespace where the copies are bind-mounted over /etc, so that it
    and its children (Postfix's daemons, which take their groups with
    initgroups) see them. A change is written into the mounted files in
    place, so processes already running see it too. Needs root and unshare.
    """

    FILES = ("passwd", "group", "shadow", "gshadow")

    def __init__(self, base: Path) -> None:
        import shutil

        self.live = base / "live"  # what the wrapped processes see
        self.stage = base / "stage"  # what the shadow tools change
        for where in (self.live, self.stage):
            (where / "etc").mkdir(parents=True)
            for name in self.FILES:
                shutil.copy2(f"/etc/{name}", where / "etc" / name)

    def run(self, command: str) -> None:
        """A useradd/usermod/groupadd command line, applied to the copies (--prefix)."""
        argv = shlex.split(command)
        subprocess.run([argv[0], "--prefix", str(self.stage), *argv[1:]], check=True)
        for name in self.FILES:
            # In place: a bind mount holds the file, not its name.
            (self.live / "etc" / name).write_bytes((self.stage / "etc" / name).read_bytes())

    def _entry(self, table: str, name: str) -> list[str]:
        for line in (self.live / "etc" / table).read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return fields
        raise KeyError(name)

    def ids(self, user: str) -> tuple[int, int]:
        """(uid, primary gid) of ``user``."""
        fields = self._entry("passwd", user)
        return int(fields[2]), int(fields[3])

    def gid(self, group: str) -> int:
        return int(self._entry("group", group)[2])

    def members(self, group: str) -> list[str]:
        """The users ``group`` lists as its members (supplementary group)."""
        return [name for name in self._entry("group", group)[3].split(",") if name]

    def has_user(self, user: str) -> bool:
        try:
            self._entry("passwd", user)
        except KeyError:
            return False
        return True

    @property
    def wrap(self) -> list[str]:
        mounts = " && ".join(
            f"mount --bind {shlex.quote(str(self.live / 'etc' / name))} /etc/{name}"
            for name in self.FILES
        )
        return ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$@"', "sh"]


SENDMAIL_ROOT = REPO / ".cache" / "sendmail" / "root"
SENDMAIL_BIN = SENDMAIL_ROOT / "usr/libexec/sendmail/sendmail"
SENDMAIL_CF = SENDMAIL_ROOT / "usr/share/sendmail/cf/m4/cf.m4"

SENDMAIL_MC = """\
divert(-1)
divert(0)dnl
include(`{cf_m4}')dnl
VERSIONID(`miltrd tests')dnl
OSTYPE(`linux')dnl
define(`QUEUE_DIR', `{base}/queue')dnl
define(`MSP_QUEUE_DIR', `{base}/mspq')dnl
define(`STATUS_FILE', `{base}/statistics')dnl
define(`ALIAS_FILE', `{base}/aliases')dnl
define(`confPID_FILE', `{base}/sendmail.pid')dnl
define(`confSERVICE_SWITCH_FILE', `{base}/service.switch')dnl
define(`confHOSTS_FILE', `{base}/hosts')dnl
define(`confDONT_PROBE_INTERFACES', `true')dnl
define(`SMART_HOST', `[127.0.0.1]')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {sink_port}')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {sink_port}')dnl
define(`confMILTER_MACROS_CONNECT', `j, _, {{daemon_name}}, {{client_addr}}')dnl
define(`confMILTER_MACROS_ENVFROM', `i, {{auth_authen}}, {{mail_addr}}')dnl
FEATURE(`no_default_msa')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`nocanonify')dnl
FEATURE(`use_cw_file')dnl
define(`confCW_FILE', `-o {base}/local-host-names')dnl
LOCAL_DOMAIN(`local.example')dnl
DAEMON_OPTIONS(`Family=inet, Name=MTA, Addr=127.0.0.1, Port={smtp_port}')dnl
INPUT_MAIL_FILTER(`miltrd', `S={milter}, F=T, T=C:10s;S:30s;R:30s;E:60s')dnl
MAILER(`smtp')dnl
"""


def build_sendmail_cf(base: Path, milter: str, sink_port: int, smtp_port: int) -> Path:
    """A sendmail.cf made with Sendmail's own m4 files."""
    for sub in ("queue", "mspq"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "aliases").write_text("")
    (base / "local-host-names").write_text(
        "# our domains\nhosts.example\nMail.Hosts.EXAMPLE  # comment\n"
    )
    (base / "hosts").write_text("127.0.0.1 localhost mta.test.example\n")
    (base / "service.switch").write_text("hosts files\naliases files\n")
    mc = base / "sendmail.mc"
    mc.write_text(
        SENDMAIL_MC.format(
            cf_m4=SENDMAIL_CF, base=base, sink_port=sink_port, smtp_port=smtp_port, milter=milter
        )
    )
    cf = base / "sendmail.cf"
    with open(cf, "wb") as out:
        subprocess.run(["m4", str(mc)], stdout=out, check=True)
    return cf


class Sendmail:
    """Sendmail 8.17 from the unpacked Debian packages, in the foreground."""

    def __init__(self, base: Path, milter: str, sink_port: int) -> None:
        self.base = base
        self.smtp_port = free_port()
        self.cf = build_sendmail_cf(base, milter, sink_port, self.smtp_port)
        # Without a dot in the host name Sendmail sleeps 60 s at start.
        self.proc = subprocess.Popen(
            [
                "unshare",
                "--uts",
                "sh",
                "-c",
                f"hostname mta.test.example && exec {SENDMAIL_BIN} -C {self.cf} -bD",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.smtp_port, timeout=30)

    def stop(self) -> None:
        # Sendmail may ignore one SIGTERM: repeat, then kill.
        for _ in range(3):
            if self.proc.poll() is not None:
                return
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=3)
        self.proc.kill()
        self.proc.wait()
