"""dmarc: apply the From domain's DMARC policy (RFC 7489) to incoming mail.

At end of message, for the RFC5322.From domain (the Author Domain):

1. Policy discovery (section 6.6.3): the TXT record at ``_dmarc.`` of the
   Author Domain, else at ``_dmarc.`` of its Organizational Domain, found
   with the Public Suffix List (section 3.2) from a maintained offline
   source: Debian's ``publicsuffix`` file when installed (``psl_file``),
   else the list bundled with the ``publicsuffixlist`` package.
2. Identifier alignment (section 3.1): the spf and dkim results that
   plugins earlier in the chain published (``msg.auth_results``): a DKIM
   pass whose ``header.d``, or an SPF pass whose ``smtp.mailfrom`` (or
   ``smtp.helo``) domain, matches the Author Domain exactly (``s``) or by
   Organizational Domain (``r``), per ``adkim`` / ``aspf``.
3. Result: ``dmarc=pass`` if either aligns, ``fail`` otherwise, ``none``
   without a policy, ``temperror`` when the DNS did not answer,
   ``permerror`` for a From field that names no domain.
4. Disposition for a fail: ``p`` (or ``sp`` for a subdomain found through
   the Organizational Domain's record), lowered one step for messages
   outside the ``pct`` sample (section 6.6.4); then the ``disposition``
   table turns it into a verdict: reject -> 550 5.7.1, quarantine -> the
   MTA's quarantine (hold), none -> mark only. Local overrides (trusted
   forwarders, mailing lists, allowed domains) keep the result and apply
   no policy.

A From field with several addresses is checked for each domain; the
strictest failing policy applies (section 6.6.1). A message with no From
field, or several, is refused by default (``invalid_from``), as RFC 5322
forbids it. Optionally the data an aggregate report needs (section 7.2)
goes to ``report_dir/dmarc-YYYY-MM-DD.jsonl``, one JSON object a message.
"""

from __future__ import annotations

import datetime
import email.utils
import ipaddress
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from publicsuffixlist import PublicSuffixList

from miltrd.api import (
    Action,
    AuthResult,
    ConfigPath,
    Message,
    OptionError,
    Phase,
    Plugin,
    Verdict,
    domain_of,
    parse_ip,
    reject,
    run_blocking,
    tempfail,
)

from ._dns import DnsTempError, make_resolver, txt_records

Direction = Literal["incoming", "outgoing", "internal"]
DEBIAN_PSL = "/usr/share/publicsuffix/public_suffix_list.dat"
_DEBIAN_PSL = ConfigPath(DEBIAN_PSL)
_NO_DIR = ConfigPath("")
# Weakest to strictest, for several From domains and for pct.
POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True)
class Disposition:
    """Verdict per applied policy: reject (550 5.7.1) | quarantine (the MTA
    holds it) | mark (Authentication-Results only) | tempfail (451)."""

    reject: Literal["reject", "quarantine", "mark", "tempfail"] = "reject"
    quarantine: Literal["quarantine", "mark", "reject"] = "quarantine"
    none: Literal["mark"] = "mark"
    temperror: Literal["mark", "tempfail"] = "mark"


@dataclass(frozen=True)
class DmarcOptions:
    directions: list[Direction] = field(default_factory=lambda: ["incoming"])
    disposition: Disposition = field(default_factory=Disposition)
    invalid_from: Literal["reject", "mark"] = "reject"  # no From field, or several
    trusted_forwarders: list[str] = field(default_factory=list)  # networks: no policy applied
    mailing_lists: list[str] = field(default_factory=list)  # List-Id values: no policy applied
    allow_domains: list[str] = field(default_factory=list)  # From domains: no policy applied
    # Relative paths: to the config file's directory.
    psl_file: ConfigPath = (
        _DEBIAN_PSL  # "" or a missing file: the list bundled with publicsuffixlist
    )
    report_dir: ConfigPath = _NO_DIR  # aggregate-report data, one file per day
    dns_timeout: float = 10.0
    nameservers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Record:
    """A DMARC record (RFC 7489 section 6.3) and where it was found."""

    domain: str  # where the record is: the Author or the Organizational Domain
    p: str
    sp: str
    adkim: str
    aspf: str
    pct: int
    rua: str = ""


@dataclass(frozen=True)
class Evaluation:
    """The outcome for one Author Domain."""

    from_domain: str
    result: str  # pass | fail | none | temperror | permerror
    policy: str = "none"  # the policy that applies (p or sp), before pct
    disposition: str = "none"  # after pct and overrides
    record: Record | None = None
    dkim_aligned: bool = False
    spf_aligned: bool = False
    override: str = ""  # forwarded | mailing_list | local_policy | sampled_out
    reason: str = ""


_TAG = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*([^;]*?)\s*(?:;|$)")


def parse_record(text: str, domain: str) -> Record | None:
    """A DMARC record, or None when it is not one (section 6.6.3: a record
    without a valid p= counts as p=none only if it has a valid rua=)."""
    if not re.match(r"v\s*=\s*DMARC1\s*(;|$)", text):
        return None
    tags: dict[str, str] = {}
    for m in _TAG.finditer(text):
        tags.setdefault(m.group(1).lower(), m.group(2))
    p = tags.get("p", "").lower()
    if p not in POLICIES:
        if not tags.get("rua"):
            return None
        p = "none"
    sp = tags.get("sp", "").lower()
    if sp not in POLICIES:
        sp = p
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError:
        pct = 100
    return Record(
        domain=domain,
        p=p,
        sp=sp,
        adkim=adkim if adkim in ("r", "s") else "r",
        aspf=aspf if aspf in ("r", "s") else "r",
        pct=min(max(pct, 0), 100),
        rua=tags.get("rua", ""),
    )


def lower_policy(policy: str) -> str:
    """Section 6.6.4: outside the pct sample, the next policy down."""
    return POLICIES[max(POLICIES.index(policy) - 1, 0)]


class Dmarc(Plugin):
    Options = DmarcOptions
    actions = Action.AUTH_RESULTS | Action.QUARANTINE
    needs = Phase.HEADER

    def __init__(self, options: DmarcOptions, **kw: Any) -> None:
        super().__init__(options, **kw)
        self.resolver = make_resolver(options.nameservers, options.dns_timeout)
        self.forwarders = []
        for i, net in enumerate(options.trusted_forwarders):
            try:
                self.forwarders.append(ipaddress.ip_network(net, strict=False))
            except ValueError:
                raise OptionError(f"trusted_forwarders[{i}]", f"not a network: {net!r}") from None
        self.allowed = {d.lower().rstrip(".") for d in options.allow_domains}
        self.lists = [re.sub(r"\s+", "", x).lower().strip("<>") for x in options.mailing_lists]
        self.psl = self._load_psl(options.psl_file)
        if options.report_dir and not os.path.isdir(options.report_dir):
            raise OptionError("report_dir", f"{options.report_dir}: not a directory")
        # pct sampling; a test may replace it with a seeded generator.
        self.random = random.Random()

    @staticmethod
    def _load_psl(path: str) -> PublicSuffixList:
        if path and os.path.exists(path):
            try:
                with open(path, "rb") as source:
                    return PublicSuffixList(source)
            except OSError as exc:
                raise OptionError("psl_file", f"{path}: {exc.strerror or exc}") from None
        if path and path != DEBIAN_PSL:
            raise OptionError("psl_file", f"{path}: no such file")
        return PublicSuffixList()

    def describe(self) -> list[str]:
        source = (
            self.options.psl_file
            if self.options.psl_file and os.path.exists(self.options.psl_file)
            else "the list bundled with publicsuffixlist"
        )
        lines = [f"public suffix list: {source}"]
        if self.options.report_dir:
            lines.append(f"aggregate-report data: {self.options.report_dir}/dmarc-DATE.jsonl")
        return lines

    def org_domain(self, domain: str) -> str:
        """Section 3.2: the registrable domain (the domain itself when the
        list knows no more)."""
        return str(self.psl.privatesuffix(domain) or domain)

    # --- end of message ---------------------------------------------------

    async def on_eom(self, msg: Message) -> Verdict | None:
        if msg.direction not in self.options.directions:
            return None
        fields = [v for n, v in msg.headers if n.lower() == "from"]
        if len(fields) != 1:
            return self._invalid_from(msg, f"{len(fields)} From header fields")
        domains = []
        for _name, address in email.utils.getaddresses(fields):
            domain = domain_of(address)
            if domain and domain not in domains:
                domains.append(domain)
        if not domains:
            return self._invalid_from(msg, "no domain in the From header field")
        try:
            evaluations = await run_blocking(
                self._evaluate_all,
                msg.auth_results,
                domains,
                timeout=self.options.dns_timeout * 2 * len(domains) + 5,
            )
        except TimeoutError:
            evaluations = [Evaluation(d, "temperror", reason="DNS too slow") for d in domains]
        evaluations = [self._override(msg, e) for e in evaluations]
        for e in evaluations:
            self.log.info(
                "dmarc=%s header.from=%s policy=%s disposition=%s%s%s",
                e.result,
                e.from_domain,
                e.policy,
                e.disposition,
                f" override={e.override}" if e.override else "",
                f" ({e.reason})" if e.reason else "",
            )
            props = [("header.from", e.from_domain)]
            if e.record is not None:
                props.append(("policy.dmarc", e.policy))
            msg.publish_auth_result("dmarc", e.result, props, reason=e.reason)
        self._report(msg, evaluations)
        return self._verdict(msg, evaluations)

    def _invalid_from(self, msg: Message, why: str) -> Verdict | None:
        self.log.info("dmarc=permerror: %s", why)
        msg.publish_auth_result("dmarc", "permerror", reason=why)
        if self.options.invalid_from == "reject":
            return reject(
                f"Message must have exactly one From header field with an address ({why})",
                code=550,
                xcode="5.7.1",
                reason="dmarc invalid from",
            )
        return None

    def _verdict(self, msg: Message, evaluations: list[Evaluation]) -> Verdict | None:
        failed = [e for e in evaluations if e.result == "fail"]
        if failed:
            worst = max(failed, key=lambda e: POLICIES.index(e.disposition))
            act = getattr(self.options.disposition, worst.disposition)
            text = (
                f"DMARC policy of {worst.from_domain} refuses this message "
                "(the From domain did not authenticate it)"
            )
            if act == "reject":
                return reject(text, code=550, xcode="5.7.1", reason=f"dmarc {worst.disposition}")
            if act == "tempfail":
                return tempfail(text, code=451, xcode="4.7.1", reason="dmarc")
            if act == "quarantine":
                msg.quarantine(f"DMARC {worst.disposition} policy of {worst.from_domain}")
            return None
        errors = [e.from_domain for e in evaluations if e.result == "temperror"]
        if errors and self.options.disposition.temperror == "tempfail":
            return tempfail(
                f"DMARC policy of {errors[0]} could not be looked up, try again later",
                code=451,
                xcode="4.4.3",
                reason="dmarc temperror",
            )
        return None

    # --- evaluation (in a worker thread: DNS) -----------------------------

    def _evaluate_all(
        self, results: tuple[AuthResult, ...], domains: list[str]
    ) -> list[Evaluation]:
        return [self.evaluate(domain, results) for domain in domains]

    def discover(self, domain: str) -> tuple[Record | None, str]:
        """Section 6.6.3: (record, organizational domain); DnsTempError."""
        org = self.org_domain(domain)
        for candidate in dict.fromkeys([domain, org]):
            records = [
                r
                for r in (
                    parse_record(t, candidate)
                    for t in txt_records(self.resolver, f"_dmarc.{candidate}")
                    if t.startswith("v=DMARC1")
                )
                if r is not None
            ]
            if len(records) == 1:
                return records[0], org
            if len(records) > 1:
                return None, org  # several records: as if none (6.6.3 step 5)
        return None, org

    def evaluate(self, domain: str, results: tuple[AuthResult, ...]) -> Evaluation:
        """One Author Domain against the published spf and dkim results."""
        try:
            record, org = self.discover(domain)
        except DnsTempError as exc:
            return Evaluation(domain, "temperror", reason=str(exc))
        if record is None:
            return Evaluation(domain, "none")

        def aligned(other: str, mode: str) -> bool:
            other = other.lower().rstrip(".")
            if mode == "s":
                return other == domain
            return self.org_domain(other) == org

        dkim_ok = any(
            r.method == "dkim"
            and r.result == "pass"
            and aligned(r.get("header.d") or "", record.adkim)
            for r in results
        )
        spf_ok = any(
            r.method == "spf" and r.result == "pass" and aligned(_spf_domain(r), record.aspf)
            for r in results
        )
        subdomain = record.domain != domain
        policy = record.sp if subdomain else record.p
        if dkim_ok or spf_ok:
            return Evaluation(domain, "pass", policy, "none", record, dkim_ok, spf_ok)
        disposition, override = policy, ""
        if record.pct < 100 and self.random.randrange(100) >= record.pct:
            disposition, override = lower_policy(policy), "sampled_out"
        return Evaluation(domain, "fail", policy, disposition, record, False, False, override)

    def _override(self, msg: Message, e: Evaluation) -> Evaluation:
        """Local policy (section 6.7): known forwarders and lists break
        alignment without being forgers; listed domains are trusted."""
        if e.result != "fail":
            return e
        why = ""
        address = parse_ip(msg.conn.address)
        list_id = (msg.header("List-Id") or "").lower()
        if address is not None and any(address in net for net in self.forwarders):
            why = "forwarded"
        elif list_id and any(x and x in list_id for x in self.lists):
            why = "mailing_list"
        elif e.from_domain in self.allowed or self.org_domain(e.from_domain) in self.allowed:
            why = "local_policy"
        if not why:
            return e
        return Evaluation(
            e.from_domain, e.result, e.policy, "none", e.record, False, False, why, e.reason
        )

    # --- aggregate-report data --------------------------------------------

    def _report(self, msg: Message, evaluations: list[Evaluation]) -> None:
        if not self.options.report_dir or msg.observing:
            return  # observe mode makes no lasting change
        now = datetime.datetime.now(datetime.timezone.utc)
        lines = []
        for e in evaluations:
            if e.record is None:
                continue  # reports go to domains that publish a record
            entry = {
                "time": now.isoformat(timespec="seconds"),
                "source_ip": str(parse_ip(msg.conn.address) or ""),
                "header_from": e.from_domain,
                "envelope_from": msg.sender_domain,
                "policy_published": {
                    "domain": e.record.domain,
                    "adkim": e.record.adkim,
                    "aspf": e.record.aspf,
                    "p": e.record.p,
                    "sp": e.record.sp,
                    "pct": e.record.pct,
                    "rua": e.record.rua,
                },
                "disposition": e.disposition,
                "dkim_aligned": "pass" if e.dkim_aligned else "fail",
                "spf_aligned": "pass" if e.spf_aligned else "fail",
                "override": e.override,
                "auth_results": {
                    "dkim": [
                        {
                            "domain": r.get("header.d") or "",
                            "selector": r.get("header.s") or "",
                            "result": r.result,
                        }
                        for r in msg.auth_results
                        if r.method == "dkim"
                    ],
                    "spf": [
                        {
                            "domain": _spf_domain(r),
                            "scope": "helo" if r.get("smtp.helo") else "mfrom",
                            "result": r.result,
                        }
                        for r in msg.auth_results
                        if r.method == "spf"
                    ],
                },
            }
            lines.append(json.dumps(entry, sort_keys=True) + "\n")
        if not lines:
            return
        path = Path(self.options.report_dir) / f"dmarc-{now:%Y-%m-%d}.jsonl"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            with os.fdopen(fd, "a") as out:
                out.write("".join(lines))
        except OSError as exc:
            # Report data is a by-product: losing a line must not lose mail.
            self.log.error("cannot write DMARC report data to %s: %s", path, exc)


def _spf_domain(result: AuthResult) -> str:
    mailfrom = result.get("smtp.mailfrom")
    if mailfrom:
        return domain_of(mailfrom) if "@" in mailfrom else mailfrom.lower()
    return (result.get("smtp.helo") or "").lower().rstrip(".")


PLUGIN = Dmarc
