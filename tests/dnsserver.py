"""A real DNS server on loopback for the SPF tests: dnsmasq with our own zone.

dnsmasq (Debian's dnsmasq-base, no system service) answers only from the
records given here: ``local=`` makes every other name under the test
domains NXDOMAIN, and nothing is forwarded anywhere.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .tools import free_port, require

ZONE = """\
local=/example.org/
local=/example.net/
local=/example.com/
# pass for 192.0.2.0/24, fail for everything else
txt-record=example.org,"v=spf1 ip4:192.0.2.0/24 -all"
# softfail
txt-record=soft.example.net,"v=spf1 ip4:198.51.100.1 ~all"
# neutral
txt-record=neutral.example.net,"v=spf1 ?all"
# permerror: an unknown mechanism
txt-record=broken.example.net,"v=spf1 ip4:192.0.2.1 bogus -all"
# an explanation the domain publishes for its failures
txt-record=explained.example.net,"v=spf1 -all exp=why.explained.example.net"
txt-record=why.explained.example.net,"Mail from %{d} must come from its own servers"
# IPv6 senders
txt-record=v6.example.net,"v=spf1 ip6:2001:db8::/32 -all"
# HELO names
txt-record=helo.example.org,"v=spf1 ip4:192.0.2.0/24 -all"
# best guess: no SPF record, but an A record and MX
host-record=noreco.example.net,203.0.113.5
mx-host=noreco.example.net,noreco.example.net,10
host-record=mail.example.org,192.0.2.10
# the loopback clients of the MTA tests (Sendmail cannot pretend another address)
txt-record=loopback.example.net,"v=spf1 ip4:127.0.0.0/8 -all"
"""


@contextlib.contextmanager
def dns_server(extra: str = "") -> Iterator[int]:
    """Run dnsmasq on 127.0.0.1:PORT with ZONE and ``extra`` (more dnsmasq
    lines, e.g. DKIM keys); yields PORT."""
    with dns_process(extra) as (port, _):
        yield port


@contextlib.contextmanager
def dns_process(extra: str = "") -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """dnsmasq as dns_server runs it; yields (PORT, the process).

    The process is there to be stopped (SIGSTOP: a DNS server that
    receives queries and never answers) and continued.
    """
    require("/usr/sbin/dnsmasq")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "dnsmasq.conf"
        conf.write_text(
            f"port={port}\nlisten-address=127.0.0.1\nbind-interfaces\n"
            "no-resolv\nno-hosts\nno-poll\n" + ZONE + extra
        )
        proc = subprocess.Popen(
            ["/usr/sbin/dnsmasq", "-k", f"--conf-file={conf}", "--user=root", "--pid-file="],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_ready(port, proc)
            yield port, proc
        finally:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            proc.wait(timeout=10)


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    import dns.message
    import dns.query

    deadline = time.monotonic() + 10
    while True:
        try:
            dns.query.udp(dns.message.make_query("example.org", "TXT"), "127.0.0.1", 1, port)
            return
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read() if proc.stderr else b""
                raise RuntimeError(f"dnsmasq did not start: {err!r}") from None
            time.sleep(0.05)


@contextlib.contextmanager
def silent_dns() -> Iterator[int]:
    """A UDP port that receives DNS queries and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def run_with_private_dns(
    argv: list[str], extra: str, stdin: bytes, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` where the system resolver is a dnsmasq with ZONE and ``extra``.

    For tools that read /etc/resolv.conf and take no DNS server option
    (dkimpy's ``dkimverify``). The command runs in its own network and mount
    namespaces (unshare, as root): a loopback of its own and nothing else,
    where dnsmasq answers on 127.0.0.1:53 and a resolv.conf naming it is
    bind-mounted over /etc/resolv.conf. Nothing can leave the namespace, and
    the host's resolv.conf and port 53 are untouched.
    """
    require("/usr/sbin/dnsmasq", "/usr/bin/unshare", "/usr/sbin/ip")
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "dnsmasq.conf"
        conf.write_text(
            "port=53\nlisten-address=127.0.0.1\nbind-interfaces\n"
            "no-resolv\nno-hosts\nno-poll\n" + ZONE + extra
        )
        resolv = Path(tmp) / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
        pid = Path(tmp) / "dnsmasq.pid"
        # dnsmasq forks once its socket is bound, so the query cannot come first.
        script = (
            'pidfile=$3; ip link set lo up && mount --bind "$1" /etc/resolv.conf'
            ' && /usr/sbin/dnsmasq --conf-file="$2" --user=root --pid-file="$pidfile"'
            ' || exit 125; shift 3; "$@"; rc=$?; kill "$(cat "$pidfile")"; exit $rc'
        )
        unshare = ["unshare", "--net", "--mount", "sh", "-c", script, "sh"]
        return subprocess.run(
            [*unshare, str(resolv), str(conf), str(pid), *argv],
            input=stdin,
            capture_output=True,
            timeout=timeout,
        )
