"""Connection.macro: a macro by name, however the MTA spelled it."""

from __future__ import annotations

from miltrd.api import Connection, InternalRules


def test_a_macro_is_found_with_or_without_braces() -> None:
    conn = Connection(id="t", internal_rules=InternalRules())
    conn.macros = {"i": "4QAB", "{auth_authen}": "alice", "j": ""}
    assert conn.macro("i") == "4QAB"
    assert conn.macro("{i}") == "4QAB"
    assert conn.macro("auth_authen") == "alice"
    assert conn.macro("{auth_authen}") == "alice"
    # Defined but empty is an answer, not a miss.
    assert conn.macro("j", "x") == ""
    assert conn.macro("{daemon_name}") == ""
    assert conn.macro("daemon_name", "none") == "none"
