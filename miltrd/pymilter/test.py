"""``Milter.test.TestBase``: pymilter's older test mixin.

``class TestMilter(TestBase, MyMilter)`` replaces the actions with ones
that record what was done, and adds ``connect()``, ``feedFile()`` and
``feedMsg()`` to drive the callbacks; ``setsymval`` defines macros. The
records are the attributes TestCtx keeps (``_body``, ``_bodyreplaced``,
``_headerschanged``, ``_addrcpt``, ``_delrcpt``, ``_sender``, ``_reply``,
``_msg``). ``log`` appends to ``logfile``.

Unlike pymilter's, ``@noreply`` callbacks answer CONTINUE here without
this module rebinding ``Milter.NOREPLY`` for the whole process (there is
no MTA to skip the reply), ``setsymlist`` records macro names (not
characters) and ``connect`` passes an AF_INET address.
"""

from __future__ import annotations

import io
from socket import AF_INET
from typing import IO, Any

from . import milter
from .testctx import BODY_CHUNK, header_bytes, parse_headers, set_header, split_message

__all__ = ["TestBase"]


class TestBase:
    """Mixin: put it before the filter class in the bases."""

    __test__ = False  # not a pytest test class
    _actions: int
    _protocol: int

    def __init__(self, logfile: str = "test/milter.log") -> None:
        self._protocol = 0
        self.logfp: IO[str] | None = open(logfile, "a")  # noqa: SIM115 - closed by _close
        self._sender: str | None = None
        self._delrcpt: list[str] = []
        self._addrcpt: list[str] = []
        self._macros: dict[str, str] = {}
        self._body: io.BytesIO | None = None
        self._bodyreplaced = False
        self._headerschanged = False
        self._envfromchanged = False
        self._reply: tuple[Any, ...] | None = None
        self._msg: Any = None
        self._stage: int | None = None
        self._symlist: list[set[str] | None] = [None] * 7
        self._newbody: io.BytesIO | None = None

    def _close(self) -> None:
        if self.logfp:
            self.logfp.close()
            self.logfp = None

    def log(self, *msg: Any) -> None:
        for item in msg:
            print(item, file=self.logfp, end=" ")
        print(file=self.logfp)

    def setsymval(self, name: str, val: str) -> None:
        """Define a macro for getsymval."""
        self._macros[name] = val

    def getsymval(self, name: str) -> str | None:
        stage = self._stage
        if stage is not None and stage >= 0:
            wanted = self._symlist[stage]
            if wanted is not None and name not in wanted:
                return None
        return self._macros.get(name)

    def _at_eom(self, what: str) -> None:
        if self._stage != milter.M_EOM:
            raise milter.error(f"cannot {what}: only at end of message")

    def replacebody(self, chunk: bytes) -> None:
        self._at_eom("replace body")
        assert self._newbody is not None
        self._newbody.write(chunk)
        self._bodyreplaced = True

    def chgfrom(self, sender: str, params: str | None = None) -> None:
        self._at_eom("change sender")
        self.log(f"chgfrom: sender={sender}")
        self._envfromchanged = True
        self._sender = sender

    def quarantine(self, reason: str) -> None:
        self._at_eom("quarantine")
        self.log(f"quarantine: {reason}")

    def progress(self) -> None:
        return None

    def chgheader(self, field: str, idx: int, value: str | None) -> None:
        self._at_eom("change header")
        self.log(f"chgheader: {field}[{idx}]={value}")
        set_header(self._msg, field, value or "", index=idx)
        self._headerschanged = True

    def addheader(self, field: str, value: str, idx: int = -1) -> None:
        self._at_eom("add header")
        self.log(f"addheader: {field}={value}")
        set_header(self._msg, field, value, index=idx if idx >= 0 else None, insert=idx >= 0)
        self._headerschanged = True

    def delrcpt(self, rcpt: str) -> None:
        self._at_eom("delete recipient")
        self._delrcpt.append(rcpt)

    def addrcpt(self, rcpt: str, params: str | None = None) -> None:
        self._at_eom("add recipient")
        self._addrcpt.append(rcpt)

    def setreply(self, rcode: str, xcode: str | None = None, *msg: str | None) -> None:
        self._reply = (rcode, xcode, *msg)

    def setsymlist(self, stage: int, *macros: str) -> None:
        if self._stage != -1:
            raise milter.error("setsymlist may only be called from negotiate")
        names = {n for m in macros for n in (m.decode() if isinstance(m, bytes) else m).split()}
        if len(names) > 5:
            raise ValueError("setsymlist limited to 5 macros by MTA")
        if self._symlist[stage] is not None:
            raise ValueError(f"setsymlist already called for stage {stage}")
        self._symlist[stage] = names

    def _step(self, stage: int | None, func: Any, *args: Any) -> int:
        self._stage = stage
        try:
            rc: int = func(*args)
        finally:
            self._stage = None
        return rc

    def feedFile(
        self, fp: IO[Any], sender: str = "spam@adv.com", rcpt: str = "victim@lamb.com", *rcpts: str
    ) -> int:
        """Feed one message, then close the connection (as pymilter's does)."""
        this: Any = self
        self._body = None
        self._bodyreplaced = False
        self._headerschanged = False
        self._reply = None
        self._sender = f"<{sender}>"
        raw = fp.read()
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        head, sep, body = split_message(raw)
        msg = self._msg = parse_headers(head)
        rc = self._step(milter.M_ENVFROM, this.envfrom_bytes, self._sender.encode())
        if rc != milter.CONTINUE:
            return rc
        for each in (rcpt, *rcpts):
            rc = self._step(milter.M_ENVRCPT, this.envrcpt_bytes, f"<{each}>".encode())
            if rc != milter.CONTINUE:
                return rc
        rc = self._step(milter.M_DATA, this.data)
        if rc != milter.CONTINUE:
            return rc
        for name, value in msg.items():
            rc = self._step(None, this.header_bytes, name, header_bytes(value))
            if rc != milter.CONTINUE:
                return rc
        rc = self._step(milter.M_EOH, this.eoh)
        if rc != milter.CONTINUE:
            return rc
        stream = io.BytesIO(body)
        while buf := stream.read(BODY_CHUNK):
            rc = self._step(None, this.body, buf)
            if rc == milter.SKIP:
                break
            if rc != milter.CONTINUE:
                return rc
        self._newbody = io.BytesIO()
        rc = self._step(milter.M_EOM, this.eom)
        if self._bodyreplaced:
            body = self._newbody.getvalue()
        if self._headerschanged:
            nl = b"\r\n" if sep == b"\r\n\r\n" else b"\n"
            head = nl.join(
                name.encode("ascii", "surrogateescape") + b": " + header_bytes(value)
                for name, value in msg.items()
            )
        self._body = io.BytesIO(head + sep + body)
        this.close()
        self._close()
        return rc

    def feedMsg(self, fname: str, sender: str = "spam@adv.com", *rcpts: str) -> int:
        with open("test/" + fname, "rb") as fp:
            return self.feedFile(fp, sender, *rcpts)

    def connect(self, host: str = "localhost", helo: str = "spamrelay", ip: str = "1.2.3.4") -> int:
        """Negotiate, then call connect and (if it continues) hello."""
        this: Any = self
        self._body = None
        self._bodyreplaced = False
        this._setctx(None)
        self._symlist = [None] * 7
        opts = [milter.CURR_ACTS, 0x1FFFFF, 0, 0]
        self._step(-1, this.negotiate, opts)
        self._protocol &= ~milter.P_NR_ALL
        rc = self._step(milter.M_CONNECT, super().connect, host, AF_INET, (ip, 1234))  # type: ignore[misc]
        if rc != milter.CONTINUE:
            this.close()
            return rc
        rc = self._step(milter.M_HELO, this.hello, helo)
        if rc != milter.CONTINUE:
            this.close()
        return rc
