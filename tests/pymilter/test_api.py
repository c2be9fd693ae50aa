"""pymilter's API as the layer gives it: decorators, negotiation, actions,
setreply, decoding, argument shapes, TestCtx."""

from __future__ import annotations

import importlib
import io
import json
import socket
import subprocess
import sys

import pytest

import miltrd.pymilter as Milter
from miltrd.api import Connection
from miltrd.pymilter import finder, milter
from miltrd.pymilter.plugin import hostaddr_of
from miltrd.pymilter.session import EngineContext, MilterSession, make_reply
from miltrd.pymilter.testctx import TestCtx

from .runner import c_pymilter_available


def test_constants_match_the_c_module() -> None:
    if not c_pymilter_available():
        pytest.skip("C pymilter is not installed: nothing to compare with")
    probe = subprocess.run(
        [sys.executable, "-c",
         "import json, milter; print(json.dumps({k: v for k, v in vars(milter).items() if isinstance(v, int)}))"],
        cwd="/", capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    c = json.loads(probe.stdout)
    ours = {k: getattr(milter, k) for k in c}
    assert ours == c
    assert all(getattr(Milter, k) == v for k, v in c.items())


def test_base_switches_every_optional_callback_off() -> None:
    class Nothing(Milter.Base):
        pass

    no_bits = sum(nc for _nr, nc in Milter.OPTIONAL_CALLBACKS.values())
    nr_bits = sum(nr for nr, _nc in Milter.OPTIONAL_CALLBACKS.values())
    mask = Nothing.protocol_mask()
    assert mask & no_bits == 0  # NO* kept by the MTA: steps switched off
    assert mask & nr_bits == nr_bits
    assert mask & Milter.P_RCPT_REJ and mask & Milter.P_HDR_LEADSPC


def test_overriding_enables_and_noreply_marks() -> None:
    class Some(Milter.Base):
        def envrcpt(self, to, *params):
            return Milter.CONTINUE

        @Milter.noreply
        def header(self, name, value):
            return Milter.CONTINUE

    mask = Some.protocol_mask()
    assert mask & Milter.P_NORCPT and mask & Milter.P_NR_RCPT  # both cleared by negotiate
    assert mask & Milter.P_NOHDRS and not mask & Milter.P_NR_HDR
    opts = [Milter.CURR_ACTS, 0x1FFFFF, 0, 0]
    m = Some()
    m._setctx(None)
    assert m.negotiate(opts) == Milter.CONTINUE
    assert not opts[1] & Milter.P_NORCPT and opts[1] & Milter.P_NR_HDR
    assert opts[1] & Milter.P_NOCONNECT
    assert m.header("Subject", "x") == Milter.NOREPLY


def test_enable_protocols_is_inherited() -> None:
    @Milter.rejected_recipients
    class Parent(Milter.Base):
        pass

    class Child(Parent):
        def envrcpt(self, to, *params):
            return Milter.CONTINUE

    assert not Parent.protocol_mask() & Milter.P_RCPT_REJ
    assert not Child.protocol_mask() & Milter.P_RCPT_REJ
    assert Child.protocol_mask() & Milter.P_HDR_LEADSPC
    lead = Milter.header_leading_space(type("Lead", (Milter.Base,), {}))
    assert not lead.protocol_mask() & Milter.P_HDR_LEADSPC


def test_decorator_misuse() -> None:
    with pytest.raises(ValueError, match="non-optional"):
        Milter.nocallback(lambda self: 0)
    with pytest.raises(ValueError, match="non-optional"):

        @Milter.noreply
        def eom(self):
            return Milter.CONTINUE

    with pytest.raises(ValueError, match="limited to 5"):
        Milter.symlist("a", "b", "c", "d", "e", "f")(lambda self: 0)

    class Wrong(Milter.Base):
        @Milter.nocallback
        def hello(self, name):
            return Milter.REJECT

    with pytest.raises(RuntimeError, match="must be CONTINUE"):
        Wrong().hello("x")


def _ctx(macros: dict[str, str] | None = None) -> EngineContext:
    return EngineContext(lambda: macros or {})


def test_actions_need_negotiation_and_end_of_message() -> None:
    m = Milter.Base()
    ctx = _ctx()
    m._setctx(ctx)
    m._actions = Milter.ADDHDRS
    with pytest.raises(Milter.DisabledAction, match="CHGFROM"):
        m.chgfrom("<a@b>")
    with pytest.raises(Milter.DisabledAction, match="ADDRCPT_PAR"):
        m._actions |= Milter.ADDRCPT
        m.addrcpt("<a@b>", "NOTIFY=NEVER")
    with pytest.raises(milter.error, match="cannot add header"):
        m.addheader("X-A", "1")
    ctx.in_eom = True
    m.addheader("X-A", "1", 0)
    assert ctx.changes[0].kind == "addheader" and ctx.changes[0].index == 0


def test_setreply_rules() -> None:
    m = Milter.Base()
    ctx = _ctx()
    m._setctx(ctx)
    with pytest.raises(ValueError, match="must be doubled"):
        m.setreply("550", "5.7.1", "50% off")
    m.setreply("550", "5.7.1", "100%% off", "second line")
    assert ctx.reply == make_reply("550", "5.7.1", "100%% off", "second line")
    assert make_reply("451", None, "later").xcode == "4.0.0"
    for bad in (
        ("250", None, "ok"),
        ("550", "4.7.1", "x"),
        ("550", "5.7.1", "a\r\nb"),
        ("55", None, "x"),
    ):
        with pytest.raises(milter.error, match="cannot set reply"):
            make_reply(*bad)
    with pytest.raises(milter.error):
        make_reply("550", "5.7.1", *["x"] * 33)


def test_reply_is_used_only_with_a_matching_code() -> None:
    class Replies(Milter.Base):
        def envrcpt(self, to, *params):
            self.setreply("550", "5.1.1", "no such user")
            return Milter.TEMPFAIL if "temp" in to else Milter.REJECT

    session = MilterSession("t", dict, factory=Replies)
    session.negotiate(Milter.CURR_ACTS, 0)
    assert session.call("envrcpt", "<x@y>").reply is not None
    assert session.call("envrcpt", "<temp@y>").reply is None


def test_decode_strategies() -> None:
    seen = {}

    class Decoding(Milter.Base):
        def envfrom(self, f, *params):
            seen["default"] = f
            return Milter.CONTINUE

        @Milter.decode("bytes")
        def envrcpt(self, to, *params):
            seen["bytes"] = to
            return Milter.CONTINUE

        @Milter.decode("strict")
        def header(self, name, value):
            seen["strict"] = value
            return Milter.CONTINUE

    m = Decoding()
    m.envfrom_bytes(b"<\xff@x>")
    m.envrcpt_bytes(b"<r@x>", b"NOTIFY=NEVER")
    m.header_bytes("Subject", b"caf\xe9")
    assert seen["default"] == "<\udcff@x>"
    assert seen["bytes"] == b"<r@x>"
    assert seen["strict"] == b"caf\xe9"  # not UTF-8: bytes, as pymilter


def test_hostaddr_shapes() -> None:
    def conn(family: str, address: str | None, port: int | None) -> Connection:
        return Connection(id="c", internal_rules=None, family=family, address=address, port=port)  # type: ignore[arg-type]

    assert hostaddr_of(conn("inet", "192.0.2.1", 4321)) == (socket.AF_INET, ("192.0.2.1", 4321))
    assert hostaddr_of(conn("inet6", "IPv6:2001:DB8::1", 25)) == (
        socket.AF_INET6,
        ("2001:db8::1", 25, 0, 0),
    )
    assert hostaddr_of(conn("unix", "/run/x.sock", None)) == (socket.AF_UNIX, "/run/x.sock")
    assert hostaddr_of(conn("unknown", None, None)) == (0, None)


def test_getsymval_and_symlist() -> None:
    ctx = _ctx({"j": "mx.example", "{auth_authen}": "batman"})
    assert ctx.getsymval("{auth_authen}") == "batman"
    assert ctx.getsymval("{j}") == "mx.example"
    assert ctx.getsymval("{nope}") is None
    with pytest.raises(milter.error):
        ctx.setsymlist(Milter.M_ENVFROM, b"{auth_authen}")  # outside negotiate


def test_module_helpers() -> None:
    assert Milter.uniqueID() + 1 == Milter.uniqueID()
    assert Milter.param2dict(["size=10", "BODY=8BITMIME", "SMTPUTF8"]) == {
        "SIZE": "10",
        "BODY": "8BITMIME",
        "SMTPUTF8": None,
    }
    assert Milter.dictfromlist(["size=10", "SMTPUTF8"]) == {"SIZE": "10"}
    assert Milter.envcallback(lambda a, *f, **kw: (a, f, kw), ["<a@b>", "X", "SIZE=1"]) == (
        "<a@b>",
        ("X",),
        {"SIZE": "1"},
    )
    with pytest.raises(milter.error, match="invalid exception policy"):
        Milter.set_exception_policy(Milter.DISCARD)


def test_testctx_records_what_the_filter_did() -> None:
    finder.install()
    sys.modules.pop("tests.pymilter.programs.modifier", None)
    try:
        modifier = importlib.import_module("tests.pymilter.programs.modifier")
    finally:
        finder.uninstall()
    Modifier = modifier.Modifier
    assert issubclass(Modifier, Milter.Base)
    old = Milter.factory
    Milter.factory = Modifier
    try:
        ctx = TestCtx()
        assert ctx._connect() == Milter.CONTINUE
        raw = b"From: a@example.org\nSubject: tested\n\nhello\n"
        rc = ctx._feedFile(io.BytesIO(raw), "a@example.org", "bob@example.com")
        assert rc == Milter.CONTINUE
        assert ctx._envfromchanged and ctx._sender == "<bounces@example.net>"
        assert ctx._bodyreplaced and ctx._headerschanged
        out = ctx._body.getvalue()
        assert out.startswith(
            b"From: a@example.org\nSubject: tested\nX-Pymilter: seen <a@example.org> (tested)\n\n"
        )
        assert out.endswith(b"Replaced by the modifier.\r\nSecond chunk.\r\n")
        rc = ctx._feedFile(io.BytesIO(raw), "a@example.org", "blocked@example.com")
        assert rc == Milter.REJECT
        assert ctx._reply == (
            "550",
            "5.7.1",
            "Recipient refused by the modifier",
            "See postmaster@example.org",
            "100%% sure",
        )
        ctx._close()
    finally:
        Milter.factory = old


def test_missing_pymilter_helper_says_where_to_put_one(tmp_path) -> None:
    prog = tmp_path / "uses_helper.py"
    prog.write_text("import Milter.no_such_helper\n")
    done = subprocess.run(
        [sys.executable, "-m", "miltrd", "pymilter", str(prog)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "No module named 'Milter.no_such_helper'" in done.stderr
    assert "MILTRD_PYMILTER_LIB" in done.stderr
