"""Faults through a real MTA: numbered mail, counted at the far end.

    python3 -m bench.faults --messages 3000                 # the long form, through Postfix
    python3 -m bench.faults --mta sendmail --messages 1000  # through Sendmail (F=T)

A private Postfix (or Sendmail) on loopback hands every SMTP session to
``miltrd run`` (``workers = 2``; chain spf -> wiretap -> a marking plugin)
and relays to smtp-sink. A client sends numbered messages and, like a
sending MTA, retries every temporary failure. Meanwhile miltrd is hit by
faults in sequence and overlapping: SIGHUP storms alternating a good and
a broken config, SIGKILL of a worker and of the whole daemon (then
restarted), SIGTERM with a restart, a DNS server that stops answering, a
full archive filesystem (a small tmpfs) and a burst of SMTP sessions over
``max_connections``. After each fault a probe message is sent until it
is accepted: the time that takes is the recovery time.

At the end the sink and the MTA's log are counted: every number delivered
once and marked by the chain, none unmarked (delivered without the
filter), duplicated or missing; how often the client was told to try
later; how many archive copies each message has. The suite runs a short
form (tests/integration/test_faults.py); needs root (the tmpfs) and the
test dependencies (./scripts/test.sh).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import queue
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.dnsserver import dns_process  # noqa: E402
from tests.integration.mta import (  # noqa: E402
    Postfix,
    Sendmail,
    Sink,
    world_readable_tmpdir,
)
from tests.tools import free_port  # noqa: E402

# What the run sets at the MTA (the README quotes these values).
POSTFIX_SETTINGS = """\
milter_default_action = tempfail
milter_connect_timeout = 10s
milter_command_timeout = 30s
milter_content_timeout = 60s
"""
SENDMAIL_FLAGS = "F=T, T=C:10s;S:30s;R:30s;E:60s"  # tests/integration/mta.py SENDMAIL_MC

SENDER = "a@loopback.example.net"  # its SPF record passes 127.0.0.0/8 (tests/dnsserver.py)
RECIPIENT = "rcpt@example.com"
MARK = "X-Fault-Mark: marked"
PROBE_BASE = 100_000  # probe messages are numbered from here
BURST_BASE = 200_000  # the burst's messages from here

CONFIG = """\
[daemon]
listen = ["inet:{port}@127.0.0.1"]
workers = 2
max_connections = {max_connections}
shutdown_timeout = 5.0
timeout = 10.0

[internal]
networks = ["10.0.0.0/8"]
domains = ["example.com"]

[chain]
plugins = ["spf", "wiretap", "mark"]

[plugins.spf]
nameservers = ["127.0.0.1:{dns_port}"]
dns_timeout = {dns_timeout}

[plugins.wiretap]
root = "{archive}"

[[plugins.wiretap.archive]]
path = "{{user}}"

[plugins.mark]
use = "tests.testplugins:AddHeader"
name = "X-Fault-Mark"
value = "marked"
"""


@dataclass
class Report:
    """What arrived, counted from the sink, the MTA's log and the archive."""

    mta: str
    sent: int = 0  # distinct numbered messages the client got accepted
    delivered_once_marked: int = 0
    unmarked: int = 0  # delivered without the chain's marks (must be 0)
    duplicated: int = 0  # numbers delivered more than once
    missing: int = 0  # accepted by the MTA, never delivered
    rejected: int = 0  # 5xx to the client (must be 0: no message here deserves one)
    deferred: int = 0  # 4xx or a failed session the client had to retry
    mta_tempfails: int = -1  # "milter-reject: ... 4xx" lines in the MTA's log (-1: no log)
    mta_delivered: int = -1  # "status=sent" lines in the MTA's log
    copies: collections.Counter[int] = field(default_factory=collections.Counter)
    recoveries: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    daemon_log: str = ""

    def table(self) -> str:
        rows = [
            ("MTA", self.mta),
            ("messages accepted by the MTA", self.sent),
            ("delivered once and marked", self.delivered_once_marked),
            ("unmarked", self.unmarked),
            ("duplicated", self.duplicated),
            ("missing", self.missing),
            ("rejected (5xx)", self.rejected),
            ("deferred (client retried)", self.deferred),
            (
                "milter 4xx lines in the MTA log",
                "-" if self.mta_tempfails < 0 else self.mta_tempfails,
            ),
            ("deliveries in the MTA log", "-" if self.mta_delivered < 0 else self.mta_delivered),
            (
                "archive copies per message",
                ", ".join(f"{k}: {v}" for k, v in sorted(self.copies.items())),
            ),
            ("wall time", f"{self.seconds:.0f} s"),
        ]
        out = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
        out += ["", "| fault | recovery |", "|---|---|"]
        out += [f"| {name} | {sec:.2f} s |" for name, sec in self.recoveries]
        return "\n".join(out)


class MiltrdProcess:
    """``miltrd run`` started (and restarted) as systemd would: ready on READY=1."""

    def __init__(self, config: Path, notify: Path, log: Path) -> None:
        self.config = config
        self.notify_path = notify
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(notify))
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        # Read every notification, as systemd does.
        self.states: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read_notify, daemon=True).start()

    def _read_notify(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.states.put(self.notify.recv(4096))

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait for READY=1; retry while the old workers still hold the port."""
        deadline = time.monotonic() + timeout
        while True:
            self._drain_notify()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "miltrd", "run", "-c", str(self.config)],
                    env=dict(os.environ, PYTHONPATH=str(REPO), NOTIFY_SOCKET=str(self.notify_path)),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                )
            if self._wait_ready(deadline):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"miltrd did not start:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def _drain_notify(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.states.get_nowait()

    def _wait_ready(self, deadline: float) -> bool:
        assert self.proc is not None
        while time.monotonic() < deadline:
            try:
                if self.states.get(timeout=0.2).startswith(b"READY=1"):
                    return True
            except queue.Empty:
                if self.proc.poll() is not None:
                    return False
        return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def workers(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except FileNotFoundError:
            return []
        return [int(p) for p in text.split()]

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 40.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class World:
    """The MTA, the sink, the DNS server, the archive and miltrd, all private."""

    base: Path
    mta: str
    smtp_port: int
    sink: Sink
    miltrd: MiltrdProcess
    dns_pid: int
    archive: Path
    config: Path
    fault_end: float
    good_config: str
    mta_log: Callable[[], str] | None
    max_connections: int
    # Called by a fault that lasts once it is in force: mail sent from then
    # on meets it (run() releases the second half of its slice here).
    armed: Callable[[], None] = lambda: None

    def write_config(self, good: bool) -> None:
        text = self.good_config
        if not good:
            text = text.replace(*_broken(text))
        tmp = self.config.with_suffix(".new")
        tmp.write_text(text)
        os.replace(tmp, self.config)


def _broken(text: str) -> tuple[str, str]:
    match = re.search(r"dns_timeout = [0-9.]+", text)
    assert match is not None
    return match.group(), 'dns_timeout = "soon"'


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def world(mta: str, max_connections: int = 4, dns_timeout: float = 1.5) -> Iterator[World]:
    with world_readable_tmpdir() as base, dns_process() as (dns_port, dns):
        dns_pid = dns.pid
        with tmpfs(base / "archive", "64m") as archive:
            port = free_port()
            config = base / "miltrd.toml"
            good = CONFIG.format(
                port=port,
                max_connections=max_connections,
                dns_port=dns_port,
                dns_timeout=dns_timeout,
                archive=archive,
            )
            config.write_text(good)
            daemon = MiltrdProcess(config, base / "notify", base / "miltrd.log")
            sink = Sink(base / "sink")
            server: Postfix | Sendmail | None = None
            try:
                daemon.start()
                mta_log: Callable[[], str] | None
                if mta == "postfix":
                    pf = Postfix(
                        base / "pf", f"inet:127.0.0.1:{port}", sink.port, extra=POSTFIX_SETTINGS
                    )
                    server, smtp_port, mta_log = pf, pf.smtp_port, pf.log
                else:
                    sm = Sendmail(base / "sm", f"inet:{port}@127.0.0.1", sink.port)
                    server, smtp_port, mta_log = sm, sm.smtp_port, None
                yield World(
                    base=base,
                    mta=mta,
                    smtp_port=smtp_port,
                    sink=sink,
                    miltrd=daemon,
                    dns_pid=dns_pid,
                    archive=archive,
                    config=config,
                    good_config=good,
                    mta_log=mta_log,
                    max_connections=max_connections,
                    fault_end=0.0,
                )
            finally:
                if server is not None:
                    server.stop()
                daemon.stop()
                sink.stop()


# --- the sending side ----------------------------------------------------------


def message(number: int) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: fault run {number}\r\n"
        f"Message-ID: <fault-{number}@faults.example.net>\r\nX-Fault-Seq: {number}\r\n\r\n"
        f"message {number}\r\n"
    ).encode()


class Client:
    """Sends numbered messages; retries every temporary failure, as an MTA would."""

    def __init__(self, port: int, threads: int = 4, retry: float = 0.3) -> None:
        self.port = port
        self.retry = retry
        self.todo: queue.Queue[tuple[float, int] | None] = queue.Queue()
        self.accepted: dict[int, float] = {}
        self.deferred = 0
        self.rejected: dict[int, str] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def send(self, number: int) -> bool:
        """One attempt; True when the MTA took the message (250)."""
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=90) as smtp:
                smtp.sendmail(SENDER, [RECIPIENT], message(number))
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                with self.lock:
                    self.rejected[number] = f"{exc.smtp_code} {exc.smtp_error!r}"
                return True
            return self._deferred()
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            if code >= 500:
                with self.lock:
                    self.rejected[number] = f"{code} {text!r}"
                return True
            return self._deferred()
        except (smtplib.SMTPException, OSError):
            return self._deferred()
        with self.lock:
            self.accepted[number] = time.monotonic()
        return True

    def _deferred(self) -> bool:
        with self.lock:
            self.deferred += 1
        return False

    def submit(self, numbers: range | list[int]) -> None:
        for n in numbers:
            self.todo.put((0.0, n))

    def _work(self) -> None:
        while (item := self.todo.get()) is not None:
            not_before, number = item
            delay = not_before - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not self.send(number):
                self.todo.put((time.monotonic() + self.retry, number))

    def done(self, numbers: set[int]) -> bool:
        with self.lock:
            return numbers <= set(self.accepted) | set(self.rejected)

    def close(self) -> None:
        for _ in self.threads:
            self.todo.put(None)


# --- faults ---------------------------------------------------------------------


def sighup_storm(w: World, count: int = 30, gap: float = 0.03) -> None:
    """SIGHUPs as fast as a script sends them, alternating a broken and a good config."""
    for i in range(count):
        w.write_config(good=bool(i % 2))
        w.miltrd.signal(signal.SIGHUP)
        time.sleep(gap)
    w.write_config(good=True)
    w.miltrd.signal(signal.SIGHUP)


def kill_worker(w: World) -> None:
    workers = w.miltrd.workers()
    if workers:
        os.kill(workers[0], signal.SIGKILL)


def kill_storm(w: World, seconds: float = 2.0, every: float = 0.15) -> None:
    """Workers killed over and over while mail flows: some kills land between
    the archive copy and the verdict (the case that makes a second copy)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        kill_worker(w)
        time.sleep(every)


def kill_worker_then_sighup(w: World) -> None:
    """A SIGHUP while the replacement worker starts."""
    before = set(w.miltrd.workers())
    kill_worker(w)
    deadline = time.monotonic() + 5
    while not set(w.miltrd.workers()) - before and time.monotonic() < deadline:
        time.sleep(0.001)
    w.miltrd.signal(signal.SIGHUP)


def silent_dns(
    w: World, seconds: float = 3.0, during: Callable[[World], None] | None = None
) -> None:
    os.kill(w.dns_pid, signal.SIGSTOP)
    try:
        w.armed()
        if during is not None:
            during(w)
        time.sleep(seconds)
    finally:
        os.kill(w.dns_pid, signal.SIGCONT)
        w.fault_end = time.monotonic()


def full_archive(
    w: World, seconds: float = 3.0, during: Callable[[World], None] | None = None
) -> None:
    filler = w.archive / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096):  # then the last pages
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    try:
        w.armed()
        if during is not None:
            during(w)
        time.sleep(seconds)
    finally:
        filler.unlink()
        w.fault_end = time.monotonic()


def burst(w: World, sessions: int, client: Client, first: int) -> list[int]:
    """SMTP sessions opened all at once, more than max_connections per worker allows."""
    numbers = list(range(first, first + sessions))
    barrier = threading.Barrier(sessions)
    failed: list[int] = []

    def one(number: int) -> None:
        try:
            smtp = smtplib.SMTP("127.0.0.1", w.smtp_port, timeout=90)
        except OSError:
            barrier.wait()
            failed.append(number)
            return
        try:
            barrier.wait()
            smtp.sendmail(SENDER, [RECIPIENT], message(number))
            with client.lock:
                client.accepted[number] = time.monotonic()
        except (smtplib.SMTPException, OSError):
            with client.lock:
                client.deferred += 1
            failed.append(number)
        finally:
            with contextlib.suppress(Exception):
                smtp.quit()

    threads = [threading.Thread(target=one, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.submit(failed)  # retried like any deferred message
    return numbers


def kill_daemon_restart(w: World) -> None:
    w.fault_end = time.monotonic()  # recovery counts the restart
    w.miltrd.signal(signal.SIGKILL)
    assert w.miltrd.proc is not None
    w.miltrd.proc.wait()
    w.miltrd.start()


def sigterm_restart(w: World) -> None:
    w.fault_end = time.monotonic()
    w.miltrd.stop()
    w.miltrd.start()


def restart_then_sighup(w: World) -> None:
    """``systemctl restart`` and ``reload`` back to back."""
    w.fault_end = time.monotonic()
    w.miltrd.stop()
    w.miltrd.start()
    w.miltrd.signal(signal.SIGHUP)


Fault = tuple[str, Callable[[World, "Client", int], list[int] | None]]


def schedule(mta: str, burst_sessions: int) -> list[Fault]:
    """The faults, in order; some overlap on purpose."""
    faults: list[Fault] = [
        ("SIGHUP storm, good/broken configs", lambda w, c, n: sighup_storm(w)),
        ("SIGKILL of a worker", lambda w, c, n: kill_worker(w)),
        ("SIGKILL of a worker + SIGHUP as it restarts", lambda w, c, n: kill_worker_then_sighup(w)),
        ("SIGKILL storm of workers", lambda w, c, n: kill_storm(w)),
        ("silent DNS + SIGHUP storm", lambda w, c, n: silent_dns(w, during=sighup_storm)),
        (
            "full archive filesystem + SIGKILL of a worker",
            lambda w, c, n: full_archive(w, during=kill_worker),
        ),
        (
            f"burst of {burst_sessions} sessions over max_connections",
            lambda w, c, n: burst(w, burst_sessions, c, n),
        ),
        ("SIGTERM + restart", lambda w, c, n: sigterm_restart(w)),
        ("SIGKILL of the daemon + restart", lambda w, c, n: kill_daemon_restart(w)),
        ("restart + SIGHUP at once", lambda w, c, n: restart_then_sighup(w)),
    ]
    return faults


def probe(client: Client, number: int, since: float, timeout: float = 120.0) -> float:
    """Seconds from ``since`` (the fault's end) until a message is accepted again."""
    while not client.send(number):
        if time.monotonic() - since > timeout:
            raise RuntimeError(f"no recovery within {timeout:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - since


# --- counting ---------------------------------------------------------------------

_SEQ = re.compile(rb"^X-Fault-Seq: (\d+)\r?$", re.M)
_SPF_PASS = re.compile(rb"^Received-SPF: pass\b", re.M | re.I)


def _numbers_in(directory: Path) -> list[tuple[int, bytes]]:
    out = []
    for path in directory.iterdir():
        if path.is_file():
            data = path.read_bytes()
            match = _SEQ.search(data)
            if match:
                out.append((int(match.group(1)), data))
    return out


def count(w: World, client: Client, report: Report) -> None:
    delivered: dict[int, list[bytes]] = collections.defaultdict(list)
    for number, data in _numbers_in(w.sink.directory):
        delivered[number].append(data)
    copies: collections.Counter[int] = collections.Counter()
    maildir = w.archive / "rcpt"
    for sub in ("new", "cur"):
        if (maildir / sub).is_dir():
            for number, _ in _numbers_in(maildir / sub):
                copies[number] += 1
    accepted = set(client.accepted)
    report.sent = len(accepted)
    report.rejected = len(client.rejected)
    report.deferred = client.deferred
    for number in accepted:
        got = delivered.get(number, [])
        if not got:
            report.missing += 1
            continue
        if len(got) > 1:
            report.duplicated += 1
        marked = all(MARK.encode() in d and _SPF_PASS.search(d) for d in got)
        if not marked:
            report.unmarked += 1
        elif len(got) == 1:
            report.delivered_once_marked += 1
        report.copies[copies[number]] += 1
    if w.mta_log is not None:
        log = w.mta_log()
        report.mta_tempfails = len(re.findall(r"milter-reject: \S+ .*?: 4\d\d ", log))
        report.mta_delivered = log.count("status=sent")
    report.daemon_log = w.miltrd.log()


def run(
    mta: str = "postfix",
    messages: int = 300,
    *,
    burst_sessions: int = 24,
    faults: list[str] | None = None,
    out: Callable[[str], None] = print,
) -> Report:
    """The whole run; ``faults`` picks steps of the schedule by name prefix."""
    started = time.monotonic()
    report = Report(mta=mta)
    with world(mta) as w:
        client = Client(w.smtp_port)
        steps = [
            f
            for f in schedule(mta, burst_sessions)
            if faults is None or any(f[0].startswith(p) for p in faults)
        ]
        chunk = max(1, messages // (len(steps) + 1))
        expected: set[int] = set()
        sent = 0
        try:
            for i, (name, fault) in enumerate(steps):
                # Half a slice of traffic before the fault, half while it is
                # in force (or right after an instant one).
                first, second = (
                    range(sent, sent + chunk // 2),
                    range(sent + chunk // 2, sent + chunk),
                )
                expected |= set(range(sent, sent + chunk))
                sent += chunk
                client.submit(first)
                _wait(lambda: any(n in client.accepted for n in first), 120)  # noqa: B023
                released = threading.Event()

                def release(second: range = second, released: threading.Event = released) -> None:
                    if not released.is_set():
                        released.set()
                        client.submit(second)

                w.armed = release
                w.fault_end = 0.0
                extra = fault(w, client, BURST_BASE + i * 1000)
                w.fault_end = w.fault_end or time.monotonic()
                release()
                if extra:
                    expected |= set(extra)
                seconds = probe(client, PROBE_BASE + i, w.fault_end)
                expected.add(PROBE_BASE + i)
                report.recoveries.append((name, seconds))
                out(f"{name}: recovered in {seconds:.2f} s")
            client.submit(range(sent, messages))
            expected |= set(range(sent, messages))
            _wait(lambda: client.done(expected), 300)
            # The MTA delivers on its own clock.
            _wait(
                lambda: len({n for n, _ in _numbers_in(w.sink.directory)}) >= len(client.accepted),
                120,
            )
            time.sleep(1.0)  # a duplicate would come late
        finally:
            client.close()
        count(w, client, report)
    report.seconds = time.monotonic() - started
    return report


def _wait(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout:.0f}s")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mta", choices=["postfix", "sendmail"], default="postfix")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--burst", type=int, default=32, help="SMTP sessions in the burst")
    parser.add_argument("--rounds", type=int, default=1, help="run the schedule this many times")
    args = parser.parse_args(argv)
    bad = 0
    for _ in range(args.rounds):
        report = run(args.mta, args.messages, burst_sessions=args.burst)
        print(report.table())
        problems = check(report)
        for problem in problems:
            print("PROBLEM:", problem)
        bad += bool(problems)
    return 1 if bad else 0


def check(report: Report) -> list[str]:
    """What must hold after a run (the suite asserts the same)."""
    problems = []
    if report.unmarked:
        problems.append(f"{report.unmarked} message(s) delivered without the chain's marks")
    if report.duplicated:
        problems.append(f"{report.duplicated} message(s) delivered more than once")
    if report.missing:
        problems.append(f"{report.missing} accepted message(s) never delivered")
    if report.rejected:
        problems.append(f"{report.rejected} message(s) rejected")
    if report.copies.get(0):
        problems.append(f"{report.copies[0]} delivered message(s) without an archive copy")
    if report.delivered_once_marked != report.sent:
        problems.append(
            f"only {report.delivered_once_marked} of {report.sent} delivered once and marked"
        )
    log = report.daemon_log
    for needle in ("Traceback", "Exception in callback", "exited with -1;", "exited with -15;"):
        if needle in log:
            problems.append(f"miltrd's log has {needle!r}")
    return problems


if __name__ == "__main__":
    raise SystemExit(main())
