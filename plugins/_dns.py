"""DNS for the authentication plugins (spf, dkim, dmarc): one way to build a
resolver from the ``nameservers`` and ``dns_timeout`` options, and TXT
lookups that tell "no record" from "could not ask".

Every lookup is bounded by ``dns_timeout`` (dnspython's lifetime), so a
DNS server that never answers gives a temporary error, never a hung
session.
"""

from __future__ import annotations

import ipaddress

import dns.exception
import dns.resolver

from miltrd.api import OptionError

__all__ = ["DnsTempError", "make_resolver", "parse_nameserver", "txt_records"]


class DnsTempError(Exception):
    """The DNS did not answer (timeout, SERVFAIL, no server): a temporary error."""


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"IP"``, ``"IP:PORT"`` or ``"[IPv6]:PORT"`` -> (IP, PORT); ValueError otherwise."""
    port = 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = int(rest.lstrip(":"))
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    else:
        host = text
    ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(port)
    return host, port


def make_resolver(nameservers: list[str], dns_timeout: float) -> dns.resolver.Resolver | None:
    """A resolver for these servers (default: /etc/resolv.conf), each query
    at most 5 s and all tries of one lookup at most ``dns_timeout`` seconds.

    Raises OptionError naming ``nameservers[i]`` or ``dns_timeout``. Returns
    None when there are no servers and no /etc/resolv.conf.
    """
    if dns_timeout <= 0:
        raise OptionError("dns_timeout", "must be more than 0 seconds")
    resolver: dns.resolver.Resolver | None
    if nameservers:
        servers = []
        for i, text in enumerate(nameservers):
            try:
                servers.append(parse_nameserver(text))
            except ValueError:
                raise OptionError(
                    f"nameservers[{i}]",
                    f'expected "IP", "IP:PORT" or "[IPv6]:PORT", got {text!r}',
                ) from None
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host for host, _ in servers]
        resolver.nameserver_ports = {host: port for host, port in servers}
        resolver.port = servers[0][1]
    else:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            return None
    resolver.timeout = min(dns_timeout, 5.0)
    resolver.lifetime = dns_timeout
    return resolver


def txt_records(resolver: dns.resolver.Resolver | None, name: str) -> list[str]:
    """The TXT records at ``name``, each one's strings joined (RFC 7208 3.3,
    RFC 6376 3.6.2.2, RFC 7489 6.6.3); [] for NXDOMAIN or no TXT record.

    Raises DnsTempError when the DNS cannot be asked or does not answer.
    """
    if resolver is None:
        raise DnsTempError("no DNS server configured")
    try:
        answers = resolver.resolve(name, "TXT", search=False)
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
        return []
    except dns.exception.DNSException as exc:
        raise DnsTempError(f"DNS lookup of {name} failed: {exc}") from None
    out = []
    for rdata in answers:
        out.append(b"".join(rdata.strings).decode("ascii", "replace"))
    return out
