"""Run Debian's OpenDMARC on the DMARC cases, driven by OpenDKIM's miltertest.

OpenDMARC looks its records up with the C library's resolver, which reads
/etc/resolv.conf and only ever asks port 53. So it runs in a network and
mount namespace of its own (``unshare --net --mount``): a private loopback,
a private resolv.conf bind-mounted over the real one, and dnsmasq with the
cases' zone on port 53 of that loopback. Nothing outside the namespace
sees any of it.

OpenDMARC takes the SPF and DKIM results from an Authentication-Results
header of a trusted authserv-id, which is what the case gives it: the
header miltrd's own chain would write.
"""

from __future__ import annotations

import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..dmarc_cases import ZONE, Case

PSL = "/usr/share/publicsuffix/public_suffix_list.dat"
AUTHSERV_ID = "mta.test.example"

CONF = """\
AuthservID opendmarc.test
TrustedAuthservIDs {authserv_id}
Socket inet:8893@127.0.0.1
PidFile {base}/opendmarc.pid
PublicSuffixList {psl}
RejectFailures true
HoldQuarantinedMessages true
SPFSelfValidate false
SPFIgnoreResults false
IgnoreAuthenticatedClients false
RequiredHeaders false
DNSTimeout 2
Syslog false
Background false
"""

SCRIPT = """\
set -e
ip link set lo up
mount --bind {base}/resolv.conf /etc/resolv.conf
/usr/sbin/dnsmasq -k --conf-file={base}/dnsmasq.conf --user=root --pid-file= &
DNS=$!
opendmarc -f -c {base}/opendmarc.conf &
DMARC=$!
for i in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/8893) 2>/dev/null && break
  sleep 0.1
done
for f in {base}/case-*.lua; do
  miltertest -s "$f" || echo "CASE-ERROR $f"
done
kill $DMARC $DNS
wait 2>/dev/null || true
"""

LUA = """\
conn = mt.connect("inet:8893@127.0.0.1", 40, 0.25)
if conn == nil then error("cannot connect to opendmarc") end
mt.conninfo(conn, "mx.outside.example", "192.0.2.10")
mt.helo(conn, "mx.outside.example")
mt.macro(conn, SMFIC_MAIL, "i", "{name}")
mt.mailfrom(conn, "<{mailfrom}>")
mt.rcptto(conn, "<bob@example.com>")
mt.header(conn, "Authentication-Results", "{authres}")
mt.header(conn, "From", "{from_}")
mt.header(conn, "To", "bob@example.com")
mt.header(conn, "Subject", "dmarc case {name}")
mt.eoh(conn)
mt.eom(conn)
local reply = mt.getreply(conn)
local disposition = "none"
if reply == SMFIR_REPLYCODE then disposition = "reject" end
if mt.eom_check(conn, MT_QUARANTINE) then disposition = "quarantine" end
local header = mt.getheader(conn, "Authentication-Results", 0)
mt.echo("CASE {name} " .. disposition .. " " .. tostring(header))
mt.disconnect(conn)
"""


@dataclass(frozen=True)
class Outcome:
    result: str
    disposition: str
    header: str


def authres_for(case: Case) -> str:
    """The Authentication-Results miltrd's spf and dkim plugins would publish."""
    parts = [AUTHSERV_ID]
    if case.spf:
        parts.append(f"spf={case.spf[0]} smtp.mailfrom=bounce@{case.spf[1]}")
    if case.dkim:
        parts.append(f"dkim={case.dkim[0]} header.d={case.dkim[1]} header.s=s1")
    if len(parts) == 1:
        parts.append("none")
    return "; ".join(parts)


def run_opendmarc(base: Path, cases: list[Case]) -> dict[str, Outcome]:
    """Each case through OpenDMARC: case name -> (dmarc result, disposition, header)."""
    (base / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    (base / "dnsmasq.conf").write_text(
        "port=53\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\nno-poll\n" + ZONE
    )
    (base / "opendmarc.conf").write_text(CONF.format(base=base, psl=PSL, authserv_id=AUTHSERV_ID))
    for case in cases:
        (base / f"case-{case.name}.lua").write_text(
            LUA.format(
                name=case.name,
                authres=authres_for(case),
                from_=case.from_,
                mailfrom=f"bounce@{case.spf[1]}" if case.spf else "x@example.net",
            )
        )
    (base / "run.sh").write_text(textwrap.dedent(SCRIPT.format(base=base)))
    proc = subprocess.run(
        ["unshare", "--net", "--mount", "bash", str(base / "run.sh")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    outcomes: dict[str, Outcome] = {}
    for line in proc.stdout.splitlines():
        if not line.startswith("CASE "):
            continue
        _, name, disposition, header = line.split(" ", 3)
        # A refused message gets no header: RejectFailures refuses only a fail.
        result = "fail" if disposition == "reject" and header == "nil" else "missing"
        for part in header.split(";"):
            words = part.split()
            if words and words[0].startswith("dmarc="):
                result = words[0].split("=", 1)[1]
        outcomes[name] = Outcome(result, disposition, header)
    if len(outcomes) != len(cases):
        raise AssertionError(f"opendmarc run incomplete:\n{proc.stdout}\n{proc.stderr}")
    return outcomes
