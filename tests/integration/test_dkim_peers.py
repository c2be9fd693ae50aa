"""DKIM with real peers: Debian's OpenDKIM and dkimpy check what miltrd
signs, and miltrd checks what OpenDKIM signs.

- miltrd signs outgoing mail (RSA and Ed25519) in a private Postfix and a
  private Sendmail; the delivered message verifies with OpenDKIM's
  verifier (``opendkim -t``, keys from the loopback DNS server through
  libunbound) and with dkimpy, after the MTA's own header changes.
- OpenDKIM signs as a milter in a second private Postfix; its message is
  then sent into the Postfix with miltrd from an outside address, and
  miltrd's Authentication-Results says ``dkim=pass`` (``dkim=fail`` for a
  changed copy).
"""

from __future__ import annotations

import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import authres
import dkim as dkimpy
import dns.resolver
import pytest

from ..dnsserver import dns_server
from ..plugins.dkim_keys import KeyPair, key_record, make_key
from ..tools import free_port, require, wait_for_port
from .mta import (
    POSTFIX,
    SENDMAIL_BIN,
    SMTP_SINK,
    Miltrd,
    Postfix,
    Sendmail,
    Sink,
    running,
    world_readable_tmpdir,
)

pytestmark = pytest.mark.integration

CONFIG = """\
[daemon]
listen = ["inet:{port}@127.0.0.1"]

[internal]
networks = ["10.0.0.0/8", "127.0.0.0/8"]
domains = ["example.com"]
authserv_id = "mta.test.example"

[chain]
plugins = ["dkim"]

[plugins.dkim]
nameservers = ["127.0.0.1:{dns}"]
dns_timeout = 5.0

[[plugins.dkim.keys]]
domain = "example.com"
selector = "rsa2026"
key_file = "{rsa}"

[[plugins.dkim.keys]]
domain = "example.com"
selector = "ed2026"
key_file = "{ed}"
algorithm = "ed25519-sha256"
"""

# Long and folded fields, as real mail has them: the MTAs must not break them.
MESSAGE = """\
From: "Alice Example" <alice@{domain}>
To: Bob <bob@example.net>,
 Carol <carol@example.net>
Subject: {subject} with a subject long enough that a mail client would have
 folded it over two lines
Date: Tue, 01 Dec 2026 01:00:00 +0000
Message-ID: <{subject}@{domain}>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hello Bob,

a line with trailing white space{trail}
\tand a tab, and an empty line at the end:

"""

OPENDKIM_VERIFY = """\
Mode v
Syslog no
AuthservID opendkim.test
ResolverConfiguration {unbound}
"""

OPENDKIM_SIGN = """\
Mode s
Syslog no
Background no
Socket inet:{port}@127.0.0.1
PidFile {base}/opendkim.pid
Domain example.org
Selector sel1
KeyFile {key}
SignatureAlgorithm rsa-sha256
Canonicalization relaxed/relaxed
InternalHosts 127.0.0.0/8
ResolverConfiguration {unbound}
"""


class World:
    def __init__(self, base: Path, dns: int, keys: dict[str, KeyPair]) -> None:
        self.base, self.dns, self.keys = base, dns, keys
        self.unbound = base / "unbound.conf"
        # libunbound forwards everything to the loopback DNS server.
        self.unbound.write_text(
            "server:\n  do-not-query-localhost: no\n  verbosity: 0\n"
            f'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@{dns}\n'
        )
        self.verify_conf = base / "opendkim-verify.conf"
        self.verify_conf.write_text(OPENDKIM_VERIFY.format(unbound=self.unbound))

    def opendkim_results(self, raw: bytes) -> list[tuple[str, dict[str, str]]]:
        """What OpenDKIM's verifier makes of a message: (result, properties) per signature."""
        path = self.base / f"check-{time.monotonic_ns()}.eml"
        path.write_bytes(raw)
        proc = subprocess.run(
            ["opendkim", "-x", str(self.verify_conf), "-t", str(path), "-vv"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        line = proc.stdout.split("hvalue='", 1)[1].rsplit("'", 1)[0]
        parsed = authres.AuthenticationResultsHeader.parse(
            "Authentication-Results: " + line.replace("\n", " ")
        )
        return [
            (r.result, {f"{p.type}.{p.name}": p.value for p in r.properties})
            for r in parsed.results
            if r.method == "dkim"
        ]

    def dkimpy_results(self, raw: bytes) -> list[bool]:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port = ["127.0.0.1"], self.dns

        def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
            try:
                return b"".join(resolver.resolve(name.decode(), "TXT")[0].strings)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                return None

        def one(i: int) -> bool:
            try:
                return bool(dkimpy.DKIM(raw).verify(i, dnsfunc=dnsfunc))
            except dkimpy.ValidationError:  # dkimpy raises for a body hash mismatch
                return False

        d = dkimpy.DKIM(raw)
        n = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
        return [one(i) for i in range(n)]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require("opendkim", POSTFIX, SMTP_SINK, "script")
    with world_readable_tmpdir() as base:
        keys = {
            "rsa": make_key(base, "example.com", "rsa2026"),
            "ed": make_key(base, "example.com", "ed2026", "ed25519-sha256"),
            "org": make_key(base, "example.org", "sel1"),
        }
        with dns_server("".join(key_record(k) for k in keys.values())) as dns:
            yield World(base, dns, keys)


def start_miltrd(world: World, base: Path) -> tuple[Miltrd, int]:
    port = free_port()
    cfg = base / "miltrd.toml"
    cfg.write_text(
        CONFIG.format(
            port=port, dns=world.dns, rsa=world.keys["rsa"].path, ed=world.keys["ed"].path
        )
    )
    return Miltrd(cfg, port=port), port


@pytest.fixture(scope="module", params=["postfix", "sendmail"])
def signing_mta(request, world: World) -> Iterator[tuple[str, int, Sink]]:
    """An MTA whose loopback clients are internal to miltrd: their mail is signed."""
    if request.param == "sendmail":
        require(str(SENDMAIL_BIN), "m4", "unshare")
    base = world.base / request.param
    base.mkdir()
    miltrd, port = start_miltrd(world, base)
    sink = Sink(base / "sink")
    mta: Postfix | Sendmail
    if request.param == "postfix":
        mta = Postfix(base / "pf", f"inet:127.0.0.1:{port}", sink.port)
    else:
        mta = Sendmail(base / "sm", f"inet:{port}@127.0.0.1", sink.port)
    with running(miltrd, sink, mta):
        yield request.param, mta.smtp_port, sink


def send(smtp_port: int, sender: str, raw: bytes, xclient: str = "") -> None:
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        if xclient:
            code, text = smtp.docmd("XCLIENT", xclient)
            assert code == 220, text
            smtp.ehlo("mx.outside.example")
        smtp.sendmail(sender, ["bob@example.net"], raw)


def message(domain: str, subject: str) -> bytes:
    text = MESSAGE.format(domain=domain, subject=subject, trail="   ")
    return text.replace("\n", "\r\n").encode()


def test_mail_miltrd_signed_verifies_with_opendkim_and_dkimpy(signing_mta, world: World) -> None:
    name, smtp_port, sink = signing_mta
    subject = f"signed-through-{name}"
    send(smtp_port, "alice@example.com", message("example.com", subject))
    raw = sink.delivered(subject)
    assert raw.count(b"DKIM-Signature:") == 2
    results = world.opendkim_results(raw)
    assert sorted((r, p["header.s"], p["header.a"]) for r, p in results) == [
        ("pass", "ed2026", "ed25519-sha256"),
        ("pass", "rsa2026", "rsa-sha256"),
    ]
    assert world.dkimpy_results(raw) == [True, True]
    # A changed body fails with both verifiers: the pass above means something.
    changed = raw.replace(b"Hello Bob", b"Hello Eve")
    assert {r for r, _ in world.opendkim_results(changed)} == {"fail"}
    assert world.dkimpy_results(changed) == [False, False]


@pytest.fixture(scope="module")
def opendkim_signer(world: World) -> Iterator[tuple[int, Sink]]:
    """A second private Postfix whose milter is OpenDKIM, signing for example.org."""
    base = world.base / "opendkim-signer"
    base.mkdir()
    port = free_port()
    conf = base / "opendkim.conf"
    conf.write_text(
        OPENDKIM_SIGN.format(
            port=port, base=base, key=world.keys["org"].path, unbound=world.unbound
        )
    )
    proc = subprocess.Popen(
        ["opendkim", "-f", "-x", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, timeout=20)
        sink = Sink(base / "sink")
        postfix = Postfix(base / "pf", f"inet:127.0.0.1:{port}", sink.port)
        with running(sink, postfix):
            yield postfix.smtp_port, sink
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def verifying_postfix(world: World) -> Iterator[tuple[int, Sink]]:
    """The Postfix with miltrd, letting the test present an outside client (XCLIENT)."""
    base = world.base / "verifier"
    base.mkdir()
    miltrd, port = start_miltrd(world, base)
    sink = Sink(base / "sink")
    postfix = Postfix(
        base / "pf",
        f"inet:127.0.0.1:{port}",
        sink.port,
        extra="smtpd_authorized_xclient_hosts = 127.0.0.0/8\n"
        "mynetworks = 127.0.0.0/8 192.0.2.0/24\n",
    )
    with running(miltrd, sink, postfix):
        yield postfix.smtp_port, sink


def test_mail_opendkim_signed_verifies_in_miltrd(opendkim_signer, verifying_postfix) -> None:
    signer_port, signer_sink = opendkim_signer
    send(signer_port, "carol@example.org", message("example.org", "signed-by-opendkim"))
    signed = signer_sink.delivered("signed-by-opendkim")
    assert b"DKIM-Signature:" in signed and b"s=sel1" in signed
    # Only the message: smtp-sink's own X- lines and Postfix's Received stay out.
    body_start = signed.index(b"DKIM-Signature:")
    signed = signed[body_start:]

    port, sink = verifying_postfix
    outside = "ADDR=192.0.2.77 NAME=mx.example.org HELO=mx.example.org"
    send(port, "carol@example.org", signed, xclient=outside)
    changed = signed.replace(b"Hello Bob", b"Hello Eve").replace(
        b"signed-by-opendkim", b"changed-after-opendkim"
    )
    send(port, "carol@example.org", changed, xclient=outside)

    for subject, expected in (("signed-by-opendkim", "pass"), ("changed-after-opendkim", "fail")):
        raw = sink.delivered(subject).replace(b"\r\n", b"\n")
        values = [
            line.split(b":", 1)[1].decode()
            for line in raw.replace(b"\n\t", b" ").replace(b"\n ", b" ").split(b"\n")
            if line.lower().startswith(b"authentication-results:") and b"mta.test.example" in line
        ]
        assert len(values) == 1, raw
        parsed = authres.AuthenticationResultsHeader.parse("Authentication-Results:" + values[0])
        results = [
            (r.result, {f"{p.type}.{p.name}": p.value for p in r.properties})
            for r in parsed.results
        ]
        assert [(r, p["header.d"], p["header.s"]) for r, p in results] == [
            (expected, "example.org", "sel1")
        ]
