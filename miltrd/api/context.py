"""What a plugin sees: the [internal] rules, the SMTP connection and the current message.

The chain owns these objects; a plugin reads them and asks for changes
through the message's methods. Changes are collected and sent to the MTA
at end of message, in chain order. Per-plugin scratch space lives in
``conn.state`` (for the connection) and ``msg.state`` (reset per message).
"""

from __future__ import annotations

import functools
import ipaddress
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from .authresults import AuthResult, make_result
from .changes import (
    BodyReplacement,
    Change,
    HeaderAddition,
    HeaderChange,
    HeaderInsertion,
    Quarantining,
    RecipientAddition,
    RecipientDeletion,
    SenderChange,
)
from .phases import Action

__all__ = [
    "Caller",
    "InternalRules",
    "Connection",
    "Message",
    "Body",
    "PluginContractError",
    "apply_header_changes",
    "bare_address",
    "domain_of",
    "local_part",
    "parse_ip",
    "IPNetwork",
]

_SPOOL_REPLACEMENT = 1 << 20  # a replacement body above this goes to disk
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PluginContractError(Exception):
    """A plugin asked for a change it did not declare in ``actions``."""


def apply_header_changes(
    headers: list[tuple[str, str]], changes: list[Change]
) -> list[tuple[str, str]]:
    """``headers`` after ``changes``, as Sendmail and Postfix apply them:
    an addition goes last, an insertion at its index (0 = top), a change
    hits the index-th field of that name (counting from 1, names compared
    without case) and deletes it when the value is empty, or adds the field
    when there is no such occurrence. Other changes are ignored."""
    out = list(headers)
    for change in changes:
        if isinstance(change, HeaderAddition):
            out.append((change.name, change.value))
        elif isinstance(change, HeaderInsertion):
            out.insert(min(change.index, len(out)), (change.name, change.value))
        elif isinstance(change, HeaderChange):
            seen = 0
            for i, (name, _) in enumerate(out):
                if name.lower() == change.name.lower():
                    seen += 1
                    if seen == change.index:
                        if change.value:
                            out[i] = (name, change.value)
                        else:
                            del out[i]
                        break
            else:
                if change.value:
                    out.append((change.name, change.value))
    return out


@functools.lru_cache(maxsize=4096)  # `when` and plugins ask at every phase
def parse_ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client address as an IP (IPv4-mapped IPv6 unwrapped), or None."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.strip("[]").removeprefix("IPv6:"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def bare_address(addr: str) -> str:
    """``<User@Example.COM>`` -> ``User@Example.COM``; ``<>`` -> ``""``."""
    addr = addr.strip()
    if addr.startswith("<") and ">" in addr:
        addr = addr[1 : addr.index(">")]
    # A source route (<@a,@b:user@c>) is obsolete; keep the mailbox.
    if addr.startswith("@") and ":" in addr:
        addr = addr.split(":", 1)[1]
    return addr


def domain_of(addr: str) -> str:
    """The domain part, lower-cased (addresses compare case-insensitively there)."""
    bare = bare_address(addr)
    return bare.rpartition("@")[2].lower().rstrip(".") if "@" in bare else ""


def local_part(addr: str) -> str:
    """The part before the last ``@`` of the bare address, case kept; the whole address if it has no ``@``."""
    bare = bare_address(addr)
    return bare.rpartition("@")[0] if "@" in bare else bare


@dataclass(frozen=True)
class InternalRules:
    """The ``[internal]`` section: what counts as this site's own."""

    networks: tuple[IPNetwork, ...] = ()
    domains: frozenset[str] = frozenset()
    authenticated: bool = True
    # RFC 8601 section 2.5: the name in this site's Authentication-Results
    # headers; "" means the MTA's host name (the j macro).
    authserv_id: str = ""
    # Answers by address: `when` asks at every phase, and parsing an IP and
    # walking the networks each time was a tenth of the shipped chain's CPU.
    _by_address: dict[str | None, bool] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def is_internal_ip(self, address: str | None) -> bool:
        """Whether ``address`` (IP text, IPv4-mapped IPv6 unwrapped; None: no IP) is in ``networks``."""
        known = self._by_address.get(address)
        if known is None:
            ip = parse_ip(address)
            known = ip is not None and any(ip in net for net in self.networks)
            if len(self._by_address) >= 4096:
                self._by_address.clear()
            self._by_address[address] = known
        return known

    def is_internal_domain(self, domain: str, *, subdomains: bool = False) -> bool:
        """Whether ``domain`` (any case, a trailing dot ignored) is one of ``domains``, or with ``subdomains`` below one."""
        domain = domain.lower().rstrip(".")
        if domain in self.domains:
            return True
        return subdomains and any(domain.endswith("." + d) for d in self.domains)


class Body:
    """The message body as received (CRLF line ends), spooled to disk when large."""

    def __init__(self, spool_threshold: int) -> None:
        # Made at the first write: most messages' bodies are never kept
        # (no plugin needs them), and a spool costs more than the rest of
        # a message's set-up.
        self._spooled: tempfile.SpooledTemporaryFile[bytes] | None = None
        self._closed = False
        self.spool_threshold = spool_threshold
        self.size = 0

    @property
    def _file(self) -> tempfile.SpooledTemporaryFile[bytes]:
        spool = self._spooled
        if spool is None:
            if self._closed:
                raise ValueError("I/O operation on closed file.")
            spool = self._spooled = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                max_size=self.spool_threshold
            )
        return spool

    def append(self, data: bytes) -> None:
        """Add ``data`` at the end (the chain does this as chunks arrive)."""
        self._file.seek(0, 2)
        self._file.write(data)
        self.size += len(data)

    def replace(self, data: bytes | Iterable[bytes]) -> None:
        """Make ``data`` (bytes, or pieces of bytes) the body."""
        self._file.seek(0)
        self._file.truncate()
        self.size = 0
        for piece in (data,) if isinstance(data, bytes) else data:
            self._file.write(piece)
            self.size += len(piece)

    def read(self) -> bytes:
        """The whole body as bytes."""
        self._file.seek(0)
        return self._file.read()

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the body (clipped to its size), without
        loading the rest: for walking a large spooled body a window at a time."""
        end = min(end, self.size)
        if end <= start:
            return b""
        self._file.seek(start)
        return self._file.read(end - start)

    def chunks(self, size: int = 65536) -> Iterator[bytes]:
        """The body from the start, ``size`` bytes at a time (the last piece shorter)."""
        self._file.seek(0)
        while chunk := self._file.read(size):
            yield chunk

    @property
    def on_disk(self) -> bool:
        """Whether the body passed ``[daemon] spool_threshold`` bytes and moved to a temporary file."""
        return bool(getattr(self._spooled, "_rolled", False))

    def close(self) -> None:
        """Release the body's memory or file (the chain does, when the message ends)."""
        self._closed = True
        if self._spooled is not None:
            self._spooled.close()


@dataclass(frozen=True, slots=True)
class Caller:
    """The plugin whose hook is running: the chain sets ``Connection.caller``
    around each call, so that ``state`` and the change methods know whose
    they are and what it declared. Plugins never need to build one."""

    name: str
    actions: Action
    observe: bool = False
    position: int = 0  # in chain.plugins: changes reach the MTA in this order


@dataclass
class Connection:
    """One SMTP client connection, as the MTA described it."""

    id: str
    internal_rules: InternalRules
    hostname: str = ""
    address: str | None = None  # IP address, or socket path for unix clients
    port: int | None = None
    family: str = "unknown"  # inet | inet6 | unix | unknown
    helo: str = ""
    # Every macro the MTA has defined so far, later stages overriding; read
    # only (the daemon hands plugins a read-only view).
    macros: Mapping[str, str] = field(default_factory=dict)
    # True under ``miltrd replay``: make no lasting change outside the
    # message (write no file, send nothing); say with Message.record what
    # would have been done, and where.
    dry_run: bool = False
    _states: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    # The plugin whose hook is running now (None between hooks): the chain
    # sets it around every hook call, so a plain attribute, not a property.
    caller: Caller | None = field(default=None, repr=False)

    def macro(self, name: str, default: str = "") -> str:
        """A macro by name, with or without braces: ``macro("auth_authen")``."""
        macros = self.macros
        if name in macros:  # as spelled: the other spellings are not built
            return macros[name]
        bare = name.strip("{}")
        for key in ("{" + bare + "}", bare):
            if key in macros:
                return macros[key]
        return default

    @property
    def auth_user(self) -> str:
        """The SMTP AUTH identity, "" when the client did not authenticate."""
        return self.macro("auth_authen")

    @property
    def authenticated(self) -> bool:
        """Whether the client authenticated with SMTP AUTH (macro ``{auth_authen}`` set)."""
        return bool(self.auth_user)

    @property
    def internal(self) -> bool:
        """Inside [internal]: by network, or authenticated when that counts."""
        if self.internal_rules.is_internal_ip(self.address) or self.family == "unix":
            return True
        return self.internal_rules.authenticated and self.authenticated

    def direction_for(self, recipients: list[str]) -> str:
        """incoming (the client is not internal), internal (all recipients
        in internal.domains) or outgoing."""
        if not self.internal:
            return "incoming"
        if recipients and all(
            self.internal_rules.is_internal_domain(domain_of(r)) for r in recipients
        ):
            return "internal"
        return "outgoing"

    @property
    def state(self) -> dict[str, Any]:
        """Scratch space of the calling plugin for this connection."""
        caller = self.caller.name if self.caller else ""
        return self._states.setdefault(caller, {})


@dataclass
class Message:
    """The message being received. Addresses are bare (no angle brackets).

    One rule for what a plugin sees after earlier plugins' changes:
    ``headers`` and ``body`` are the message as it stands after every change
    asked for so far by plugins not in observe mode, applied in chain
    order as the MTA will apply them: header changes and the replaced body
    together, never a new body under old headers. At end of message that
    is what the plugins before this one made of it. ``received_headers``
    and ``received_body`` are the message as the MTA sent it.
    """

    conn: Connection
    body: Body
    sender: str = ""
    sender_args: tuple[str, ...] = ()
    # ESMTP parameters of the RCPT TO being checked (set for on_rcpt).
    rcpt_args: tuple[str, ...] = ()
    recipients: list[str] = field(default_factory=list)
    rejected_recipients: list[str] = field(default_factory=list)
    received_headers: list[tuple[str, str]] = field(default_factory=list)
    # Each accepted recipient as the MTA sent it (``<A@Example.COM>``), by
    # its bare address in lower case: what delete_recipient hands back.
    raw_recipients: dict[str, str] = field(default_factory=dict, repr=False)
    _changes: list[tuple[str, Change]] = field(default_factory=list, repr=False)
    _positions: dict[str, int] = field(default_factory=dict, repr=False)
    _received_body: Body | None = field(default=None, repr=False)
    _effects: list[tuple[str, str, str]] = field(default_factory=list, repr=False)
    _auth_results: list[AuthResult] = field(default_factory=list, repr=False)
    _states: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def headers(self) -> list[tuple[str, str]]:
        """(name, value) of each header field after the changes so far
        (see the class); folded values keep their line breaks (LF)."""
        if not self._changes:
            return list(self.received_headers)
        applied = sorted(
            (self._positions[name], i, change)
            for i, (name, change) in enumerate(self._changes)
            if name in self._positions
        )
        return apply_header_changes(self.received_headers, [c for _, _, c in applied])

    @property
    def received_body(self) -> Body:
        """The body as the MTA sent it, whatever plugins replaced."""
        return self._received_body or self.body

    def close(self) -> None:
        """Release the spooled bodies (the chain calls this when the message ends)."""
        self.body.close()
        if self._received_body is not None:
            self._received_body.close()

    @property
    def queue_id(self) -> str:
        """The MTA's queue id (macro ``i``), "" until the MTA sends it."""
        return self.conn.macro("i")

    @property
    def sender_domain(self) -> str:
        """The sender's domain, lower case, without a trailing dot; "" for ``<>``."""
        return domain_of(self.sender)

    @property
    def direction(self) -> str:
        """incoming, outgoing or internal, judged by [internal]."""
        return self.conn.direction_for(self.recipients)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first header field of that name (case-insensitive)."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default

    @property
    def observing(self) -> bool:
        """True while the calling plugin runs in observe mode: its verdicts
        and changes are only logged, and it must make no lasting change of
        its own either (no archive, quarantine copy or saved file)."""
        caller = self.conn.caller
        return caller is not None and caller.observe

    @property
    def state(self) -> dict[str, Any]:
        """Scratch space of the calling plugin for this message."""
        caller = self.conn.caller.name if self.conn.caller else ""
        return self._states.setdefault(caller, {})

    # --- changes ----------------------------------------------------------

    def _request(self, change: Change) -> None:
        needed = change.action
        caller = self.conn.caller
        if caller is None or needed not in caller.actions:
            who = caller.name if caller else "?"
            raise PluginContractError(
                f"plugin {who} asked for {type(change).__name__} without declaring "
                f"Action.{needed.name}"
            )
        self._changes.append((caller.name, change))
        # An observing plugin's changes are only logged: later plugins must
        # see the message the MTA will deliver.
        if caller.observe:
            return
        self._positions[caller.name] = caller.position
        if isinstance(change, BodyReplacement):
            if self._received_body is None:
                self._received_body = self.body
                self.body = Body(self.body.spool_threshold)
            self.body.replace(change.chunks())

    def add_header(self, name: str, value: str) -> None:
        """Append a header field at the end of the header block (``Action.ADD_HEADERS``). ``name``: an RFC 5322 field name (ValueError if not); ``value``: without the leading space, folded and made 7-bit by miltrd where needed."""
        self._request(HeaderAddition(name, value))

    def insert_header(self, index: int, name: str, value: str) -> None:
        """Insert a header field before the ``index``-th (0: at the top; ``Action.ADD_HEADERS``). ValueError for a bad name or an index below 0."""
        self._request(HeaderInsertion(index, name, value))

    def change_header(self, name: str, value: str, index: int = 1) -> None:
        """Change the index-th (from 1) field of that name."""
        self._request(HeaderChange(index, name, value))

    def delete_header(self, name: str, index: int = 1) -> None:
        """Delete the ``index``-th (from 1) field called ``name`` (``Action.CHANGE_HEADERS``)."""
        self._request(HeaderChange(index, name, ""))

    def add_recipient(self, address: str, esmtp_args: str = "") -> None:
        """Add an envelope recipient, bare or in angle brackets, with optional ESMTP arguments such as ``"NOTIFY=NEVER"`` (``Action.ADD_RECIPIENTS``). ValueError for an empty address or one with a space."""
        self._request(RecipientAddition(bare_address(address), esmtp_args))

    def delete_recipient(self, address: str) -> None:
        """Remove an envelope recipient, bare or in angle brackets, any case (``Action.DELETE_RECIPIENTS``); the MTA gets it back as it sent it in RCPT."""
        bare = bare_address(address)
        raw = self.raw_recipients.get(bare.lower(), f"<{bare}>")
        self._request(RecipientDeletion(raw))

    def change_sender(self, address: str, esmtp_args: str | None = None) -> None:
        """Replace the envelope sender, bare or in angle brackets, with optional ESMTP arguments (``Action.CHANGE_SENDER``)."""
        self._request(SenderChange(bare_address(address), esmtp_args))

    def replace_body(self, data: bytes | IO[bytes]) -> None:
        """Replace the body; plugins after this one see the new body (with
        this plugin's header changes), ``received_body`` keeps the old one.

        ``data`` is bytes, or a readable binary file that is read from its
        current position to its end a piece at a time (copied to a spool,
        so a large body is never held in memory whole; the caller keeps
        and closes its own file)."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            change = BodyReplacement(bytes(data))
        else:
            copy: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_REPLACEMENT)  # noqa: SIM115
            shutil.copyfileobj(data, copy, _SPOOL_REPLACEMENT)
            change = BodyReplacement(file=copy, size=copy.tell())
        self._request(change)

    def quarantine(self, reason: str) -> None:
        """Ask the MTA to hold the message (Postfix: the hold queue) with ``reason`` (``Action.QUARANTINE``)."""
        self._request(Quarantining(reason))

    def record(self, effect: str, where: str = "") -> None:
        """Note a lasting thing the calling plugin did outside the message,
        such as ``record("archived", "/var/spool/miltrd/archive/...")``:
        ``effect`` is one short word-like name (letters, digits, ``-``),
        shown in the summary line's ``changes=`` and counted by ``miltrd
        stats``; ``where`` (a path, an address) is shown by ``miltrd
        replay``. Under ``conn.dry_run`` record what *would* have been done
        instead of doing it. ValueError if ``effect`` is not such a name."""
        if not effect or not all(c.isalnum() or c == "-" for c in effect) or not effect.isascii():
            raise ValueError(f"effect must be a short name like 'archived', not {effect!r}")
        caller = self.conn.caller.name if self.conn.caller else "?"
        self._effects.append((caller, effect, where))

    def publish_auth_result(
        self,
        method: str,
        result: str,
        properties: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        *,
        reason: str = "",
    ) -> AuthResult:
        """Publish an authentication result (RFC 8601 resinfo), e.g.
        ``publish_auth_result("dkim", "pass", {"header.d": "example.com"})``.

        Later plugins read it in ``auth_results``; at end of message the
        chain writes every result into one Authentication-Results header at
        the top of the message. Needs ``Action.AUTH_RESULTS``; raises
        ValueError for names that are not RFC 8601 keywords.
        """
        caller = self.conn.caller
        if caller is None or Action.AUTH_RESULTS not in caller.actions:
            who = caller.name if caller else "?"
            raise PluginContractError(
                f"plugin {who} published an authentication result without declaring "
                "Action.AUTH_RESULTS"
            )
        published = make_result(method, result, properties, reason, caller.name)
        self._auth_results.append(published)
        return published

    @property
    def effects(self) -> tuple[tuple[str, str, str], ...]:
        """(plugin, effect, where) for everything recorded with ``record``."""
        return tuple(self._effects)

    @property
    def auth_results(self) -> tuple[AuthResult, ...]:
        """Every result published so far for this message, in order."""
        return tuple(self._auth_results)

    def changes(self) -> list[tuple[str, Change]]:
        """(plugin name, change) in the order they were asked for."""
        return list(self._changes)
