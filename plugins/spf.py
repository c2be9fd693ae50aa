"""spf: check the sender with SPF (RFC 7208) and act on the result.

The MAIL FROM identity is checked (the HELO identity for the null sender,
and optionally the HELO identity as well) with pyspf over dnspython. The
result goes into a ``Received-SPF`` header prepended to the message
(RFC 7208 section 9.1) and is published to the chain, which writes it into
the message's one ``Authentication-Results`` header (RFC 8601) and lets
later plugins (dmarc) use it.
A policy table maps each result to an action; per-domain overrides change
it for chosen sender domains. Internal and authenticated clients and
trusted forwarders are not checked. A DNS server that does not answer
gives temperror within ``dns_timeout``, never a hung session.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any, Literal

import dns.exception
import dns.name
import dns.resolver
import spf as pyspf

from miltrd.api import (
    Action,
    Message,
    OptionError,
    Plugin,
    Verdict,
    parse_ip,
    reject,
    run_blocking,
    tempfail,
)

from ._dns import make_resolver

Act = Literal["mark", "continue", "reject", "tempfail"]


@dataclass(frozen=True)
class Policy:
    """What to do per SPF result. mark: continue and add the headers;
    continue: continue without headers; reject: 5xx; tempfail: 4xx."""

    pass_: Act = "mark"
    fail: Act = "reject"
    softfail: Act = "mark"
    neutral: Act = "mark"
    none: Act = "mark"
    permerror: Act = "mark"
    temperror: Act = "tempfail"


@dataclass(frozen=True)
class PolicyOverride:
    pass_: Act | None = None
    fail: Act | None = None
    softfail: Act | None = None
    neutral: Act | None = None
    none: Act | None = None
    permerror: Act | None = None
    temperror: Act | None = None


@dataclass(frozen=True)
class SpfOptions:
    policy: Policy = field(default_factory=Policy)
    domains: dict[str, PolicyOverride] = field(default_factory=dict)
    best_guess: bool = False  # for domains without a record, use "v=spf1 a/24 mx/24 ptr"
    check_helo: bool = False  # also check the HELO identity; a helo fail counts too
    skip_internal: bool = True  # [internal] networks and authenticated clients
    trusted_forwarders: list[str] = field(default_factory=list)  # networks not checked
    authserv_id: str = ""  # moved to [internal] authserv_id; an error here
    add_received_spf: bool = True
    receiver: str = ""  # host name in the headers (default: the MTA's j macro)
    dns_timeout: float = 3.0  # total seconds for all lookups of one check (below daemon.timeout)
    nameservers: list[str] = field(default_factory=list)  # "IP", "IP:PORT", "[IPv6]:PORT"
    max_dns_lookups: int = 10  # RFC 7208 section 4.6.4


def _policy_get(policy: Policy | PolicyOverride, result: str) -> Act | None:
    return getattr(policy, "pass_" if result == "pass" else result)  # type: ignore[no-any-return]


# pyspf calls a module-level DNSLookup. It is replaced once by a function that
# uses the resolver of the check running in the current thread (a context
# variable, copied into the worker thread), so each plugin instance keeps its
# own nameservers and timeouts.
_resolver: contextvars.ContextVar[dns.resolver.Resolver | None] = contextvars.ContextVar(
    "spf_resolver", default=None
)
_original_lookup = pyspf.DNSLookup


def _lookup(name: str, qtype: str, strict: Any = True, timeout: float = 20) -> list[Any]:
    resolver = _resolver.get()
    if resolver is None:
        return _original_lookup(name, qtype, strict, timeout)  # type: ignore[no-any-return]
    out: list[Any] = []
    try:
        answers = resolver.resolve(name, qtype, lifetime=timeout, search=False)
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
        return out
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise pyspf.TempError(f"DNS {exc}") from None
    except dns.exception.DNSException as exc:
        raise pyspf.TempError(f"DNS {exc}") from None
    for rdata in answers:
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), rdata.address))
        elif qtype == "MX":
            out.append(((name, qtype), (rdata.preference, rdata.exchange)))
        elif qtype == "PTR":
            out.append(((name, qtype), rdata.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), rdata.strings))
    return out


pyspf.DNSLookup = _lookup


@dataclass(frozen=True)
class Outcome:
    result: str
    explanation: str
    header: str
    identity: str  # mailfrom | helo
    domain: str
    guessed: bool = False


class Spf(Plugin):
    Options = SpfOptions
    actions = Action.ADD_HEADERS | Action.AUTH_RESULTS

    def __init__(self, options: SpfOptions, **kw: Any) -> None:
        super().__init__(options, **kw)
        self.forwarders = []
        for i, net in enumerate(options.trusted_forwarders):
            try:
                self.forwarders.append(ipaddress.ip_network(net, strict=False))
            except ValueError:
                raise OptionError(f"trusted_forwarders[{i}]", f"not a network: {net!r}") from None
        self.resolver = make_resolver(options.nameservers, options.dns_timeout)
        if not 1 <= options.max_dns_lookups <= 100:
            raise OptionError("max_dns_lookups", "must be between 1 and 100")
        if options.authserv_id:
            raise OptionError(
                "authserv_id",
                "moved: set authserv_id in [internal]; every plugin's results now go "
                "into one Authentication-Results header",
            )
        for domain in options.domains:
            if not domain or " " in domain:
                raise OptionError(f"domains.{domain}", "not a domain name")

    # --- decisions --------------------------------------------------------

    def _action(self, domain: str, result: str) -> Act:
        domain = domain.lower()
        for candidate, override in self.options.domains.items():
            if domain == candidate.lower().rstrip("."):
                act = _policy_get(override, result)
                if act is not None:
                    return act
        act = _policy_get(self.options.policy, result)
        assert act is not None
        return act

    def _skip_reason(self, msg: Message) -> str:
        conn = msg.conn
        if self.options.skip_internal and conn.internal:
            return "authenticated client" if conn.authenticated else "internal client"
        address = parse_ip(conn.address)
        if address is not None and any(address in net for net in self.forwarders):
            return "trusted forwarder"
        if address is None:
            return "no client IP address"
        return ""

    async def on_mail(self, msg: Message, sender: str) -> Verdict | None:
        skip = self._skip_reason(msg)
        if skip:
            self.log.info("not checked: %s %s", skip, msg.conn.address)
            return None
        client_ip = str(parse_ip(msg.conn.address))
        helo = msg.conn.helo or msg.conn.hostname
        receiver = self.options.receiver or msg.conn.macro("j") or socket.getfqdn()
        checks = []
        if self.options.check_helo and sender:
            checks.append(await self._check(client_ip, "", helo, receiver))
        checks.append(await self._check(client_ip, sender, helo, receiver))
        verdict = None
        for outcome in checks:
            act = self._action(outcome.domain, outcome.result)
            self.log.info(
                "%s=%s domain=%s result=%s%s action=%s",
                outcome.identity,
                sender if outcome.identity == "mailfrom" else helo,
                outcome.domain,
                outcome.result,
                " (best guess)" if outcome.guessed else "",
                act,
            )
            if act == "mark":
                if self.options.add_received_spf:
                    # RFC 7208 section 9.1: prepended, like other trace fields.
                    msg.insert_header(0, "Received-SPF", outcome.header)
                self._publish(outcome, msg, helo)
            elif act in ("reject", "tempfail") and verdict is None:
                verdict = self._refuse(act, outcome)
        return verdict

    def _refuse(self, act: Act, outcome: Outcome) -> Verdict:
        who = "HELO name" if outcome.identity == "helo" else "sender domain"
        # Only a fail carries text from the domain (its exp=, RFC 7208
        # section 6.2). For the other results pyspf's text is ours (which
        # resolver, which error): it goes to the log, the reply is generic.
        if outcome.result == "fail":
            explanation = outcome.explanation or "SPF fail"
        else:
            explanation = _GENERIC.get(outcome.result, f"SPF {outcome.result}")
            if outcome.explanation:
                self.log.info("%s %s: %s", who, outcome.domain, outcome.explanation)
        if act == "tempfail":
            return tempfail(
                [f"SPF {outcome.result} for {who} {outcome.domain}", explanation],
                code=451,
                xcode="4.4.3" if outcome.result == "temperror" else "4.7.1",
                reason=f"spf {outcome.result}",
            )
        return reject(
            [f"SPF {outcome.result} for {who} {outcome.domain}", explanation],
            code=550,
            xcode="5.7.1",
            reason=f"spf {outcome.result}",
        )

    def _publish(self, outcome: Outcome, msg: Message, helo: str) -> None:
        """RFC 8601 section 2.7.2: smtp.mailfrom, or smtp.helo for the HELO identity."""
        prop = ("smtp.helo", helo) if outcome.identity == "helo" else ("smtp.mailfrom", msg.sender)
        msg.publish_auth_result("spf", outcome.result, [prop])

    async def _check(self, ip: str, sender: str, helo: str, receiver: str) -> Outcome:
        timeout = self.options.dns_timeout
        token = _resolver.set(self.resolver)
        try:
            return await run_blocking(self._query, ip, sender, helo, receiver, timeout=timeout + 1)
        except TimeoutError:
            domain = sender.rpartition("@")[2] if sender else helo
            return Outcome(
                "temperror",
                "DNS lookups took too long",
                f"TempError ({receiver}: DNS timeout) client-ip={ip}; helo={helo}; "
                f"receiver={receiver}; identity={'mailfrom' if sender else 'helo'}",
                "mailfrom" if sender else "helo",
                domain.lower(),
            )
        finally:
            _resolver.reset(token)

    def _query(self, ip: str, sender: str, helo: str, receiver: str) -> Outcome:
        q = _Query(
            i=ip,
            s=sender,
            h=helo,
            receiver=receiver,
            timeout=self.options.dns_timeout,
            querytime=self.options.dns_timeout,
        )
        q.max_lookups = self.options.max_dns_lookups
        result, _code, explanation = q.check()
        guessed = False
        if result == "none" and self.options.best_guess:
            result, _code, explanation = q.best_guess()
            guessed = True
        header = q.get_header(result, receiver=receiver)
        if guessed:
            header += "; x-best-guess=yes"
        return Outcome(result, explanation, header, q.ident, str(q.o or "").lower(), guessed)


_GENERIC = {
    "temperror": "SPF could not be checked (DNS lookup failed), try again later",
    "permerror": "The SPF record of the domain is not valid",
    "softfail": "SPF softfail: the domain does not designate this host",
    "neutral": "SPF neutral: the domain makes no statement about this host",
    "none": "The domain publishes no SPF record",
    "pass": "SPF pass",
}


class _Query(pyspf.query):  # type: ignore[misc]
    """A pyspf query whose DNS lookup limit is this instance's option, not
    pyspf's process-wide MAX_LOOKUP (two spf entries may differ)."""

    max_lookups = 10  # RFC 7208 section 4.6.4

    def check_lookups(self) -> None:
        # As pyspf: past the limit is a permerror (noted, or raised when
        # strict); past four times the limit the evaluation stops.
        self.lookups += 1
        if self.lookups > self.max_lookups * 4:
            raise pyspf.PermError(f"More than {self.max_lookups * 4} DNS lookups")
        if self.lookups > self.max_lookups:
            self.note_error("Too many DNS lookups")


PLUGIN = Spf
