"""``Milter.testctx.TestCtx``: run a filter's callbacks without an MTA.

A stand-in for the engine's context, as in pymilter 1.0.5: a test builds
``TestCtx()``, sets ``Milter.factory``, defines macros with
``_setsymval``, then ``_connect()`` and ``_feedFile(fp)`` / ``_feedMsg(name)``
call the callbacks in libmilter's order and record what the filter did:
``_reply``, ``_addrcpt``, ``_delrcpt``, ``_sender``/``_envfromchanged``,
``_headerschanged`` (and ``_msg``, the headers as changed),
``_bodyreplaced``, and ``_body``: the resulting message (header block,
blank line, body) as a BytesIO.

It follows the engine's rules where pymilter's harness is looser: actions
outside ``eom`` and ``setsymlist`` outside ``negotiate`` raise
``milter.error``, ``setreply`` is checked as libmilter checks it, and the
envelope and header callbacks get their arguments through
``envfrom_bytes``/``envrcpt_bytes``/``header_bytes`` as from a real MTA.
"""

from __future__ import annotations

import email.header
import email.message
import email.parser
import email.policy
import io
import ipaddress
import time
from socket import AF_INET, AF_INET6
from typing import IO, Any

from .. import pymilter as Milter
from . import milter
from .session import make_reply

__all__ = ["TestCtx", "split_message", "header_bytes", "set_header"]

BODY_CHUNK = 8192


def split_message(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, separator, body) of a message in bytes."""
    found = [(raw.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n") if sep in raw]
    if not found:
        return raw, b"\n\n", b""
    pos, sep = min(found)
    return raw[:pos], sep, raw[pos + len(sep) :]


def parse_headers(head: bytes) -> email.message.Message:
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    return parser.parsebytes(head + b"\n\n", headersonly=True)


def header_bytes(value: Any) -> bytes:
    """A parsed header value back to the bytes the MTA would send."""
    if isinstance(value, email.header.Header):
        return b"".join(
            part.encode("ascii", "surrogateescape") if isinstance(part, str) else part
            for part, _charset in value._chunks  # type: ignore[attr-defined]
        )
    return str(value).encode("ascii", "surrogateescape")


def set_header(
    msg: email.message.Message,
    name: str,
    value: str,
    *,
    index: int | None = None,
    insert: bool = False,
) -> None:
    """Add (at the end, or ``insert`` at position ``index``) or change the
    ``index``-th field called ``name`` (from 1; '' deletes it)."""
    items = list(msg.items())
    if insert:
        items.insert(max(0, min(index or 0, len(items))), (name, value))
    elif index is None:
        items.append((name, value))
    else:
        seen = 0
        for i, (key, _old) in enumerate(items):
            if key.lower() == name.lower():
                seen += 1
                if seen == max(index, 1):
                    if value:
                        items[i] = (key, value)
                    else:
                        del items[i]
                    break
    for key in {key for key, _ in msg.items()}:
        del msg[key]
    for key, val in items:
        msg[key] = val


class TestCtx:
    """pymilter's test context; see the module docstring."""

    __test__ = False  # not a pytest test class
    default_opts = [milter.CURR_ACTS, 0x1FFFFF, 0, 0]

    def __init__(self, logfile: str = "test/milter.log") -> None:
        self.logfile = logfile
        self._priv: Any = None
        self._delrcpt: list[str] = []
        self._addrcpt: list[tuple[str, str | None]] = []
        self._macros: dict[str, str] = {}
        self._reply: tuple[Any, ...] | None = None
        self._symlist: list[set[str] | None] = [None] * 7
        self._body: io.BytesIO | None = None
        self._bodyreplaced = False
        self._headerschanged = False
        self._msg: email.message.Message | None = None
        self._sender: str | None = None
        self._envfromchanged = False
        self._quarantine: str | None = None
        self._opts = list(TestCtx.default_opts)
        self._protocol = 0
        self._stage: int | None = None
        self._activity = time.time()
        self._newbody: io.BytesIO | None = None

    # --- the context the filter sees ----------------------------------------------

    def getpriv(self) -> Any:
        return self._priv

    def setpriv(self, priv: Any) -> None:
        self._priv = priv

    def getsymval(self, name: str) -> str | None:
        stage = self._stage
        if stage is not None and stage >= 0:
            wanted = self._symlist[stage]
            if wanted is not None and name not in wanted:
                return None
        return self._macros.get(name)

    def _setsymval(self, name: str, val: str) -> None:
        self._macros[name] = val

    def setreply(self, rcode: str, xcode: str | None, *msg: str | None) -> None:
        make_reply(rcode, xcode, *msg)
        self._reply = (rcode, xcode, *msg)

    def setsymlist(self, stage: int, macros: bytes | str) -> None:
        if self._stage != -1:
            raise milter.error("setsymlist may only be called from negotiate")
        raw = macros.decode("utf-8", "surrogateescape") if isinstance(macros, bytes) else macros
        names = set(raw.split())
        if not 0 <= stage < len(self._symlist) or not names or len(names) > 5:
            raise milter.error("cannot set macro list")
        if self._symlist[stage] is not None:
            raise milter.error(f"setsymlist already called for stage {stage}")
        self._symlist[stage] = names

    def _at_eom(self, what: str) -> None:
        if self._stage != milter.M_EOM:
            raise milter.error(f"cannot {what}: only at end of message")

    def addheader(self, field: str, value: str, idx: int = -1) -> None:
        self._at_eom("add header")
        assert self._msg is not None
        set_header(self._msg, field, value, index=idx if idx >= 0 else None, insert=idx >= 0)
        self._headerschanged = True

    def chgheader(self, field: str, idx: int, value: str | None) -> None:
        self._at_eom("change header")
        assert self._msg is not None
        set_header(self._msg, field, value or "", index=idx)
        self._headerschanged = True

    def addrcpt(self, rcpt: str, params: str | None = None) -> None:
        self._at_eom("add recipient")
        self._addrcpt.append((rcpt, params))

    def delrcpt(self, rcpt: str) -> None:
        self._at_eom("delete recipient")
        self._delrcpt.append(rcpt)

    def replacebody(self, chunk: bytes) -> None:
        self._at_eom("replace body")
        assert self._newbody is not None
        self._newbody.write(chunk)
        self._bodyreplaced = True

    def chgfrom(self, sender: str, params: str | None = None) -> None:
        self._at_eom("change sender")
        self._envfromchanged = True
        self._sender = sender

    def quarantine(self, reason: str) -> None:
        self._at_eom("quarantine")
        self._quarantine = reason

    def progress(self) -> None:
        self._activity = time.time()

    # --- driving the filter -------------------------------------------------------

    def _call(self, stage: int | None, func: Any, *args: Any) -> int:
        self._stage = stage
        try:
            rc: int = func(*args)
        finally:
            self._stage = None
        # An MTA that agreed to no reply goes on as with CONTINUE.
        return milter.CONTINUE if rc == milter.NOREPLY else rc

    def _abort(self) -> None:
        """What the MTA does when the client goes away mid-message."""
        if self._priv is not None:
            self._priv.abort()
        self._close()

    def _close(self) -> None:
        Milter.close_callback(self)

    def _negotiate(self) -> int:
        self._body = None
        self._bodyreplaced = False
        self._priv = None
        self._symlist = [None] * 7
        self._opts = list(TestCtx.default_opts)
        rc = self._call(-1, Milter.negotiate_callback, self, self._opts)
        if rc == milter.ALL_OPTS:
            self._opts = list(TestCtx.default_opts)
        elif rc != milter.CONTINUE:
            self._close()
        self._protocol = self._opts[1]
        return rc

    def _connect(
        self, host: str = "localhost", helo: str = "spamrelay", ip: str = "1.2.3.4"
    ) -> int:
        self._negotiate()
        if not self._protocol & milter.P_NOCONNECT:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError("TestCtx.connect: invalid ip address: " + ip) from None
            hostaddr: tuple[str, int] | tuple[str, int, int, int]
            if address.version == 4:
                family, hostaddr = AF_INET, (ip, 1234)
            else:
                family, hostaddr = AF_INET6, (ip, 1234, 0, 0)
            rc = self._call(milter.M_CONNECT, Milter.connect_callback, self, host, family, hostaddr)
            if rc != milter.CONTINUE:
                self._close()
                return rc
        return self._helo(helo)

    def _helo(self, helo: str) -> int:
        if self._protocol & milter.P_NOHELO:
            return milter.CONTINUE
        rc = self._call(milter.M_HELO, self._priv.hello, helo)
        if rc != milter.CONTINUE:
            self._close()
        return rc

    def _envfrom(self, *s: str) -> int:
        self._sender = s[0]
        if self._protocol & milter.P_NOMAIL:
            return milter.CONTINUE
        args = [a.encode("utf-8", "surrogateescape") for a in s]
        return self._call(milter.M_ENVFROM, self._priv.envfrom_bytes, *args)

    def _envrcpt(self, *s: str) -> int:
        if self._protocol & milter.P_NORCPT:
            return milter.CONTINUE
        args = [a.encode("utf-8", "surrogateescape") for a in s]
        return self._call(milter.M_ENVRCPT, self._priv.envrcpt_bytes, *args)

    def _data(self) -> int:
        if self._protocol & milter.P_NODATA:
            return milter.CONTINUE
        return self._call(milter.M_DATA, self._priv.data)

    def _header(self, fld: str, val: Any) -> int:
        if self._protocol & milter.P_NOHDRS:
            return milter.CONTINUE
        return self._call(None, self._priv.header_bytes, fld, header_bytes(val))

    def _eoh(self) -> int:
        if self._protocol & milter.P_NOEOH:
            return milter.CONTINUE
        return self._call(milter.M_EOH, self._priv.eoh)

    def _feed_body(self, bfp: IO[bytes]) -> int:
        if self._protocol & milter.P_NOBODY:
            return milter.CONTINUE
        while buf := bfp.read(BODY_CHUNK):
            rc = self._call(None, self._priv.body, buf)
            if rc == milter.SKIP:
                break
            if rc != milter.CONTINUE:
                return rc
        return milter.CONTINUE

    def _eom(self) -> int:
        self._newbody = io.BytesIO()
        return self._call(milter.M_EOM, self._priv.eom)

    def _feedFile(
        self, fp: IO[Any], sender: str = "spam@adv.com", rcpt: str = "victim@lamb.com", *rcpts: str
    ) -> int:
        """Feed one message (a binary file) as MAIL FROM ``sender``, RCPT TO
        ``rcpt`` and ``rcpts``; return the first answer other than CONTINUE,
        or the answer to end of message."""
        self._body = None
        self._bodyreplaced = False
        self._headerschanged = False
        self._reply = None
        raw = fp.read()
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        head, sep, body = split_message(raw)
        msg = self._msg = parse_headers(head)
        rc = self._envfrom(f"<{sender}>")
        if rc != milter.CONTINUE:
            return rc
        for each in (rcpt, *rcpts):
            rc = self._envrcpt(f"<{each}>")
            if rc != milter.CONTINUE:
                return rc
        rc = self._data()
        if rc != milter.CONTINUE:
            return rc
        for name, value in msg.items():
            rc = self._header(name, value)
            if rc != milter.CONTINUE:
                return rc
        rc = self._eoh()
        if rc != milter.CONTINUE:
            return rc
        rc = self._feed_body(io.BytesIO(body))
        if rc != milter.CONTINUE:
            return rc
        rc = self._eom()
        if self._bodyreplaced and self._newbody is not None:
            body = self._newbody.getvalue()
        if self._headerschanged:
            nl = b"\r\n" if sep == b"\r\n\r\n" else b"\n"
            head = nl.join(
                name.encode("ascii", "surrogateescape") + b": " + header_bytes(value)
                for name, value in msg.items()
            )
        self._body = io.BytesIO(head + sep + body)
        return rc

    def _feedMsg(self, fname: str, sender: str = "spam@adv.com", *rcpts: str) -> int:
        """``_feedFile`` on the file test/FNAME."""
        with open("test/" + fname, "rb") as fp:
            return self._feedFile(fp, sender, *rcpts)
