"""dkim: verify the DKIM signatures of incoming mail and sign outgoing mail.

Built on dkimpy (RFC 6376; Ed25519-SHA256 per RFC 8463).

Verifying (mail whose direction is in ``verify_directions``, by default
incoming): every DKIM-Signature, up to ``max_signatures``, gives one
result published to the chain (``dkim=pass header.d=... header.s=...
header.a=... header.b=...``), which goes into the message's
Authentication-Results header and is read by dmarc. Results (RFC 8601
section 2.7.1):

- pass: the signature verifies;
- fail: it does not (body hash or signature mismatch);
- neutral: the signature cannot be processed (syntax), or its ``l=``
  leaves part of the body unsigned (``partial_body``);
- permerror: no key, a broken key record, a key shorter than
  ``min_key_bits`` (RFC 8301 3.2), or rsa-sha1 (RFC 8301 3.1);
- temperror: the DNS did not answer within ``dns_timeout``;
- none: no signature.

The ``policy`` table acts on the message's best result (pass, then
temperror, fail, neutral, permerror, none); by default it only marks.

Signing (direction in ``sign_directions``, by default outgoing and
internal mail: internal networks and authenticated clients): for the
From address's domain (or its parent domain, ``sign_subdomains``), with
every key configured for that domain (RSA and Ed25519 together), relaxed/
relaxed by default, the From header over-signed so that none can be
added. Put dkim last in the chain: it signs the message as the plugins
before it left it. A key that cannot be read tempfails the message unless
``on_key_error = "send-unsigned"``.
"""

from __future__ import annotations

import email.utils
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import dkim as dkimpy
import dns.resolver
from dkim.canonicalization import CanonicalizationPolicy

from miltrd.api import (
    Action,
    ConfigPath,
    Message,
    OptionError,
    Phase,
    Plugin,
    Verdict,
    domain_of,
    reject,
    run_blocking,
    tempfail,
)

from ._dkimkeys import ALGORITHMS, KeyError_, LoadedKey, check_key_file, load_key
from ._dns import DnsTempError, make_resolver, txt_records

Act = Literal["mark", "continue", "reject", "tempfail"]
Direction = Literal["incoming", "outgoing", "internal"]

# RFC 6376 section 5.4.1, the fields a signature should cover when present.
DEFAULT_SIGN_HEADERS = [
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "resent-date",
    "resent-from",
    "resent-to",
    "resent-cc",
    "in-reply-to",
    "references",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
]
# Best to worst, for the policy: one good signature makes the message pass.
RANK = ("pass", "temperror", "fail", "neutral", "permerror", "none")


@dataclass(frozen=True)
class Policy:
    """What to do per result: mark (publish, continue) | continue (publish
    nothing) | reject (550 5.7.20) | tempfail (451)."""

    pass_: Act = "mark"
    fail: Act = "mark"
    neutral: Act = "mark"
    permerror: Act = "mark"
    temperror: Act = "mark"
    none: Act = "mark"


_NO_FILE = ConfigPath("")


@dataclass(frozen=True)
class SigningKey:
    domain: str = ""
    selector: str = ""
    key_file: ConfigPath = _NO_FILE  # a relative path: to the config file's directory
    algorithm: Literal["rsa-sha256", "ed25519-sha256"] = "rsa-sha256"


@dataclass(frozen=True)
class DkimOptions:
    verify_directions: list[Direction] = field(default_factory=lambda: ["incoming"])
    sign_directions: list[Direction] = field(default_factory=lambda: ["outgoing", "internal"])
    keys: list[SigningKey] = field(default_factory=list)
    sign_subdomains: bool = True  # a key for example.com signs mail From sub.example.com
    sign_headers: list[str] = field(default_factory=lambda: list(DEFAULT_SIGN_HEADERS))
    oversign_headers: list[str] = field(default_factory=lambda: ["from"])
    canonicalization: Literal["relaxed/relaxed", "relaxed/simple"] = "relaxed/relaxed"
    on_key_error: Literal["tempfail", "send-unsigned"] = "tempfail"
    min_key_bits: int = 1024  # RFC 8301 3.2: shorter keys do not verify
    partial_body: Literal["neutral", "pass", "fail"] = "neutral"  # l= leaves body unsigned
    max_signatures: int = 8  # verify at most this many per message
    policy: Policy = field(default_factory=Policy)
    dns_timeout: float = 10.0  # seconds for each key lookup; then temperror
    nameservers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Checked:
    """One signature's result."""

    result: str
    reason: str
    properties: tuple[tuple[str, str], ...]


_B_SPACE = re.compile(rb"\s+")


def _tag(fields: dict[bytes, bytes], name: bytes) -> str:
    return _B_SPACE.sub(b"", fields.get(name, b"")).decode("ascii", "replace")


class _KeyLookup:
    """dkimpy's dnsfunc over our resolver; remembers what it found, so a
    failed verification can be told apart: no key, bad key, bad signature."""

    def __init__(self, resolver: dns.resolver.Resolver | None) -> None:
        self.resolver = resolver
        self.record: bytes | None = None

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        records = txt_records(self.resolver, name.decode("ascii", "replace"))
        chosen = next((r for r in records if "p=" in r), records[0] if records else None)
        self.record = chosen.encode() if chosen is not None else None
        return self.record


def render_message(headers: list[tuple[str, str]], body: bytes) -> bytes:
    """The message as bytes with CRLF line ends, for dkimpy."""
    out = bytearray()
    for name, value in headers:
        value = value.replace("\r\n", "\n").replace("\n", "\r\n")
        sep = "" if value[:1] in (" ", "\t") else " "
        out += f"{name}:{sep}{value}\r\n".encode("utf-8", "surrogateescape")
    out += b"\r\n"
    out += body
    return bytes(out)


class Dkim(Plugin):
    Options = DkimOptions
    actions = Action.ADD_HEADERS | Action.AUTH_RESULTS
    needs = Phase.HEADER | Phase.BODY

    def __init__(self, options: DkimOptions, **kw: Any) -> None:
        super().__init__(options, **kw)
        self.resolver = make_resolver(options.nameservers, options.dns_timeout)
        if not 512 <= options.min_key_bits <= 4096:
            raise OptionError("min_key_bits", "must be between 512 and 4096")
        if not 1 <= options.max_signatures <= 100:
            raise OptionError("max_signatures", "must be between 1 and 100")
        lower = [h.lower() for h in options.sign_headers]
        if "from" not in lower:
            raise OptionError("sign_headers", "must include from (RFC 6376 section 5.4)")
        for i, h in enumerate(options.sign_headers + options.oversign_headers):
            if not re.fullmatch(r"[!-9;-~]+", h):
                raise OptionError(
                    "sign_headers" if i < len(lower) else "oversign_headers",
                    f"{h!r} is not a header field name",
                )
        self.by_domain: dict[str, list[SigningKey]] = {}
        for i, key in enumerate(options.keys):
            where = f"keys[{i}]"
            if not key.domain or not re.fullmatch(r"[A-Za-z0-9.-]+", key.domain):
                raise OptionError(f"{where}.domain", f"not a domain name: {key.domain!r}")
            if not key.selector or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", key.selector):
                raise OptionError(f"{where}.selector", f"not a selector: {key.selector!r}")
            if key.algorithm not in ALGORITHMS:
                raise OptionError(f"{where}.algorithm", f"one of {', '.join(ALGORITHMS)}")
            problems = check_key_file(key.key_file, key.algorithm)
            if problems:
                raise OptionError(f"{where}.key_file", "; ".join(problems))
            self.by_domain.setdefault(key.domain.lower().rstrip("."), []).append(key)
        self._cache: dict[str, tuple[tuple[int, int, int], LoadedKey]] = {}

    def readable_files(self) -> dict[str, str]:
        """Key files the daemon reads while it runs (checked by ``miltrd check``)."""
        return {f"keys[{i}].key_file": k.key_file for i, k in enumerate(self.options.keys)}

    def describe(self) -> list[str]:
        """One line per signing key, for ``miltrd check``."""
        lines = []
        for key in self.options.keys:
            try:
                loaded = self._key(key)
                what = f"{key.algorithm}, {loaded.bits} bits"
            except KeyError_ as exc:
                what = f"UNUSABLE: {exc}"
            lines.append(f"signs {key.domain} with selector {key.selector} ({what})")
        return lines

    # --- end of message ---------------------------------------------------

    async def on_eom(self, msg: Message) -> Verdict | None:
        direction = msg.direction
        if direction in self.options.verify_directions:
            verdict = await self._verify(msg)
            if verdict is not None:
                return verdict
        if self.by_domain and direction in self.options.sign_directions:
            return await self._sign(msg)
        return None

    # --- verifying --------------------------------------------------------

    async def _verify(self, msg: Message) -> Verdict | None:
        raw = render_message(msg.headers, msg.body.read())
        count = sum(1 for name, _ in msg.headers if name.lower() == "dkim-signature")
        if count > self.options.max_signatures:
            self.log.info("verifying %d of %d signatures", self.options.max_signatures, count)
            count = self.options.max_signatures
        if count == 0:
            checked = [Checked("none", "", ())]
        else:
            bound = self.options.dns_timeout * count + 5
            try:
                checked = await run_blocking(self._verify_all, raw, count, timeout=bound)
            except TimeoutError:
                checked = [Checked("temperror", "DNS lookups took too long", ())]
        best = min(checked, key=lambda c: RANK.index(c.result))
        act = getattr(self.options.policy, "pass_" if best.result == "pass" else best.result)
        for c in checked:
            self.log.info(
                "dkim=%s %s%s action=%s",
                c.result,
                " ".join(f"{k}={v}" for k, v in c.properties),
                f" ({c.reason})" if c.reason else "",
                act,
            )
        if act == "mark":
            for c in checked:
                msg.publish_auth_result("dkim", c.result, c.properties, reason=c.reason)
        domain = dict(best.properties).get("header.d", "")
        what = f"DKIM {best.result}" + (f" for {domain}" if domain else "")
        if act == "reject":
            return reject(
                [what, best.reason or "no valid DKIM signature"],
                code=550,
                xcode="5.7.20",
                reason=f"dkim {best.result}",
            )
        if act == "tempfail":
            return tempfail(
                [what, best.reason or "try again later"],
                code=451,
                xcode="4.4.3" if best.result == "temperror" else "4.7.5",
                reason=f"dkim {best.result}",
            )
        return None

    def _verify_all(self, raw: bytes, count: int) -> list[Checked]:
        return [self._verify_one(raw, i) for i in range(count)]

    def _verify_one(self, raw: bytes, idx: int) -> Checked:
        d = dkimpy.DKIM(raw, minkey=self.options.min_key_bits, timeout=self.options.dns_timeout)
        lookup = _KeyLookup(self.resolver)
        props: tuple[tuple[str, str], ...] = ()
        try:
            prep = d.verify_headerprep(idx)
            if not prep:
                return Checked("none", "", ())
            sig = prep[0]
            props = tuple(
                (name, value)
                for name, value in (
                    ("header.d", _tag(sig, b"d")),
                    ("header.i", _tag(sig, b"i")),
                    ("header.s", _tag(sig, b"s")),
                    ("header.a", _tag(sig, b"a")),
                    ("header.b", _tag(sig, b"b")[:8]),
                )
                if value
            )
            if sig.get(b"a") == b"rsa-sha1":
                return Checked("permerror", "rsa-sha1 is not accepted (RFC 8301)", props)
            ok = d.verify(idx, dnsfunc=lookup)
        except DnsTempError as exc:
            return Checked("temperror", str(exc), props)
        except dkimpy.KeyFormatError as exc:
            return Checked("permerror", f"key: {exc}", props)
        except dkimpy.ValidationError as exc:
            if "body hash mismatch" in str(exc):
                return Checked("fail", "body hash did not verify", props)
            return Checked("neutral", f"signature: {exc}", props)
        except dkimpy.DKIMException as exc:
            return Checked("neutral", f"signature: {exc}", props)
        if not ok:
            if lookup.record is None:
                return Checked("permerror", "no key for signature", props)
            try:
                dkimpy.evaluate_pk(b"", lookup.record)
            except dkimpy.DKIMException as exc:
                return Checked("permerror", f"key: {exc}", props)
            except Exception as exc:  # dkimpy lets binascii and ASN.1 errors through
                return Checked("permerror", f"key: {exc!r}", props)
            return Checked("fail", "signature did not verify", props)
        length = d.signature_fields.get(b"l")
        if length is not None and self.options.partial_body != "pass":
            canon = CanonicalizationPolicy.from_c_value(d.signature_fields.get(b"c", b"simple"))
            total = len(canon.canonicalize_body(d.body))
            signed = int(length)
            if signed < total:
                return Checked(
                    self.options.partial_body,
                    f"l= leaves {total - signed} of {total} body octets unsigned",
                    props,
                )
        return Checked("pass", "", props)

    # --- signing ----------------------------------------------------------

    def _signing_domain(self, msg: Message) -> str:
        """The From address's domain (RFC 5322.From, what DMARC aligns
        with), or the envelope sender's when From has no single address."""
        values = [v for n, v in msg.headers if n.lower() == "from"]
        addresses = [a for _, a in email.utils.getaddresses(values) if "@" in a]
        domain = domain_of(addresses[0]) if len(addresses) == 1 else msg.sender_domain
        candidates = [domain]
        if self.options.sign_subdomains:
            parts = domain.split(".")
            candidates += [".".join(parts[i:]) for i in range(1, len(parts) - 1)]
        return next((c for c in candidates if c in self.by_domain), "")

    def _key(self, key: SigningKey) -> LoadedKey:
        """The key, read again when its file changes (a rotated key is used
        without a reload)."""
        try:
            st = os.stat(key.key_file)
        except OSError as exc:
            raise KeyError_(f"{key.key_file}: {exc.strerror or exc}") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._cache.get(key.key_file)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        loaded = load_key(key.key_file, key.algorithm)
        self._cache[key.key_file] = (stamp, loaded)
        return loaded

    async def _sign(self, msg: Message) -> Verdict | None:
        domain = self._signing_domain(msg)
        if not domain:
            self.log.info("not signed: no key for the From domain")
            return None
        keys = []
        for key in self.by_domain[domain]:
            try:
                keys.append((key, self._key(key)))
            except KeyError_ as exc:
                if self.options.on_key_error == "tempfail":
                    self.log.error("cannot sign for %s: %s", domain, exc)
                    return tempfail(
                        "Message cannot be signed now, try again later",
                        code=451,
                        xcode="4.3.0",
                        reason="dkim key unreadable",
                    )
                self.log.error("sending unsigned by %s/%s: %s", domain, key.selector, exc)
        if not keys:
            return None
        headers = msg.headers
        raw = render_message(headers, msg.body.read())
        present = [n.lower() for n, _ in headers]
        include: list[str] = []
        for name in self.options.sign_headers:
            include += [name.lower()] * present.count(name.lower())
        for name in self.options.oversign_headers:
            include.append(name.lower())
        header_c, body_c = self.options.canonicalization.split("/")
        signatures = await run_blocking(
            self._sign_all, raw, domain, keys, include, (header_c, body_c), timeout=30.0
        )
        for key, value in signatures:
            self.log.info("signed d=%s s=%s a=%s", domain, key.selector, key.algorithm)
            # RFC 6376 section 5.6: prepended, above the fields it covers.
            msg.insert_header(0, "DKIM-Signature", value)
        return None

    def _sign_all(
        self,
        raw: bytes,
        domain: str,
        keys: list[tuple[SigningKey, LoadedKey]],
        include: list[str],
        canon: tuple[str, str],
    ) -> list[tuple[SigningKey, str]]:
        out = []
        for key, loaded in keys:
            d = dkimpy.DKIM(raw)
            header = d.sign(
                key.selector.encode(),
                domain.encode(),
                loaded.signing_bytes,
                signature_algorithm=key.algorithm.encode(),
                canonicalize=(canon[0].encode(), canon[1].encode()),
                include_headers=[h.encode() for h in include],
            )
            value = header.split(b":", 1)[1].decode("ascii")
            # dkimpy folds with CRLF + space; under relaxed header
            # canonicalization the unfolded value signs the same.
            out.append((key, value.replace("\r\n", "").strip()))
        return out


def public_key_of(key_file: str, algorithm: str) -> str:
    """The TXT value for a key file (``v=DKIM1; k=...; p=...``)."""
    return load_key(key_file, algorithm).public_record


PLUGIN = Dkim
