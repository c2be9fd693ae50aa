"""spf, dkim and dmarc in one chain through a private Postfix, as a site runs them.

One daemon instead of three: incoming mail gets one Authentication-Results
header with every result, a forged From of a domain with p=reject is
refused at the end of DATA, and outgoing mail leaves signed.
"""

from __future__ import annotations

import email.parser
import email.policy
import smtplib
from collections.abc import Iterator

import authres
import dkim as dkimpy
import dns.resolver
import pytest

from ..dnsserver import dns_server
from ..plugins.dkim_keys import key_record, make_key, record_line
from ..tools import free_port, require
from .mta import POSTFIX, SMTP_SINK, Miltrd, Postfix, Sink, running, world_readable_tmpdir

pytestmark = pytest.mark.integration

CONFIG = """\
[daemon]
listen = ["inet:{port}@127.0.0.1"]

[internal]
networks = ["10.0.0.0/8"]
domains = ["example.com"]
authserv_id = "mta.test.example"

[chain]
plugins = ["spf", "dkim", "dmarc"]

[plugins.spf]
nameservers = ["127.0.0.1:{dns}"]
dns_timeout = 5.0

[plugins.dkim]
nameservers = ["127.0.0.1:{dns}"]
dns_timeout = 5.0

[[plugins.dkim.keys]]
domain = "example.com"
selector = "out2026"
key_file = "{key}"

[plugins.dmarc]
nameservers = ["127.0.0.1:{dns}"]
dns_timeout = 5.0
"""

MESSAGE = (
    "From: {from_}\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
    "Message-ID: <{subject}@test>\r\n\r\nHello.\r\n"
)


class System:
    def __init__(self, postfix: Postfix, sink: Sink, org_key, dns: int) -> None:
        self.postfix, self.sink, self.org_key, self.dns = postfix, sink, org_key, dns

    def send(self, addr: str, sender: str, raw: bytes) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", self.postfix.smtp_port, timeout=60) as smtp:
            smtp.ehlo("client.test")
            code, text = smtp.docmd(
                "XCLIENT", f"ADDR={addr} NAME=mx.client.test HELO=mx.client.test"
            )
            assert code == 220, text
            smtp.ehlo("mx.client.test")
            try:
                smtp.sendmail(sender, ["bob@example.com"], raw)
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code, exc.smtp_error
            return 250, b""


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    require(POSTFIX, SMTP_SINK, "script")
    with world_readable_tmpdir() as base:
        org = make_key(base, "example.org", "sel1")
        out = make_key(base, "example.com", "out2026")
        zone = key_record(org) + key_record(out)
        zone += record_line("_dmarc.example.org", "v=DMARC1; p=reject")
        with dns_server(zone) as dns:
            port = free_port()
            cfg = base / "miltrd.toml"
            cfg.write_text(CONFIG.format(port=port, dns=dns, key=out.path))
            miltrd = Miltrd(cfg, port=port)
            sink = Sink(base / "sink")
            postfix = Postfix(
                base / "pf",
                f"inet:127.0.0.1:{port}",
                sink.port,
                extra="smtpd_authorized_xclient_hosts = 127.0.0.0/8\n"
                "mynetworks = 127.0.0.0/8 10.0.0.0/8 192.0.2.0/24 203.0.113.0/24\n",
            )
            with running(miltrd, sink, postfix):
                yield System(postfix, sink, org, dns)


def test_authenticated_mail_gets_one_header_with_every_result(system: System) -> None:
    raw = MESSAGE.format(from_="Carol <carol@example.org>", subject="all-pass").encode()
    signed = (
        dkimpy.sign(
            raw,
            b"sel1",
            b"example.org",
            system.org_key.signing_bytes,
            canonicalize=(b"relaxed", b"relaxed"),
        )
        + raw
    )
    assert system.send("192.0.2.55", "carol@example.org", signed)[0] == 250
    delivered = system.sink.delivered("all-pass")
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(delivered)
    ours = [
        str(v) for v in msg.get_all("Authentication-Results", []) if "mta.test.example" in str(v)
    ]
    assert len(ours) == 1
    parsed = authres.AuthenticationResultsHeader.parse(
        "Authentication-Results: " + " ".join(ours[0].split())
    )
    got = {
        r.method: (r.result, {f"{p.type}.{p.name}": p.value for p in r.properties})
        for r in parsed.results
    }
    assert got["spf"] == ("pass", {"smtp.mailfrom": "carol@example.org"})
    assert got["dkim"][0] == "pass" and got["dkim"][1]["header.d"] == "example.org"
    assert got["dmarc"] == ("pass", {"header.from": "example.org", "policy.dmarc": "reject"})


def test_a_forged_from_of_a_reject_domain_is_refused(system: System) -> None:
    raw = MESSAGE.format(from_="The CEO <ceo@example.org>", subject="forged").encode()
    code, text = system.send("203.0.113.9", "x@neutral.example.net", raw)
    assert code == 550
    assert b"5.7.1 DMARC policy of example.org refuses this message" in text


def test_outgoing_mail_leaves_signed(system: System) -> None:
    raw = MESSAGE.format(from_="alice@example.com", subject="outgoing-signed").encode()
    assert system.send("10.1.2.3", "alice@example.com", raw)[0] == 250
    delivered = system.sink.delivered("outgoing-signed")
    start = delivered.index(b"DKIM-Signature:")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = ["127.0.0.1"], system.dns

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return b"".join(resolver.resolve(name.decode(), "TXT")[0].strings)

    assert dkimpy.DKIM(delivered[start:]).verify(dnsfunc=dnsfunc)
