"""The wiretap plugin: archives and wiretap recipients."""

from __future__ import annotations

import asyncio
import mailbox
import multiprocessing
import stat
from pathlib import Path

from miltrd.api import RecipientAddition, VerdictKind
from miltrd.chain import ChainSession

from .helpers import run_message, session

RAW = b"From: a@example.org\r\nSubject: archive me\r\nX-Long: one\r\n\r\nFrom the start\r\nbody line 2\r\n"


def config(root: Path, rules: str) -> str:
    return (
        '[internal]\nnetworks = ["10.0.0.0/8"]\ndomains = ["example.com"]\n'
        f'[chain]\nplugins = ["wiretap"]\n[plugins.wiretap]\nroot = "{root}"\n{rules}'
    )


def only_file(directory: Path) -> Path:
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert len(files) == 1, files
    return files[0]


def test_maildir_per_recipient_incoming(tmp_path: Path) -> None:
    rules = '[[plugins.wiretap.archive]]\npath = "{direction}/{domain}/{user}"\n'
    s = session(config(tmp_path, rules), ip="192.0.2.1", macros={"i": "QID7"})
    out = run_message(s, "a@example.org", ["Bob@Example.com", "carol@example.com"], RAW)
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE
    for user in ("bob", "carol"):
        box = tmp_path / "incoming" / "example.com" / user
        assert sorted(p.name for p in box.iterdir()) == ["cur", "new", "tmp"]
        assert stat.S_IMODE(box.stat().st_mode) == 0o700
        copy = only_file(box / "new")
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        data = copy.read_bytes()
        envelope, _, received = data.partition(b"X-Miltrd-Direction: incoming\r\n")
        assert received == RAW  # the message as received, byte for byte
        assert b"X-Miltrd-Envelope-From: <a@example.org>\r\n" in envelope
        assert b"X-Miltrd-Envelope-To: <Bob@Example.com>\r\n" in envelope
        assert b"X-Miltrd-Envelope-To: <carol@example.com>\r\n" in envelope
        assert b"X-Miltrd-Client: " in envelope and b"[192.0.2.1]" in envelope
        assert b"X-Miltrd-Queue-Id: QID7\r\n" in envelope
        assert not list((box / "tmp").iterdir())


def test_sender_side_and_date_template(tmp_path: Path) -> None:
    rules = (
        '[[plugins.wiretap.archive]]\npath = "sent/{domain}/{user}/{year}-{month}"\n'
        'side = "sender"\ndirection = ["outgoing"]\n'
    )
    s = session(config(tmp_path, rules), ip="10.0.0.9")
    run_message(s, "Dave@example.com", ["x@other.example"], RAW)
    (month,) = list((tmp_path / "sent" / "example.com" / "dave").iterdir())
    assert len(month.name) == 7 and month.name[4] == "-"
    only_file(month / "new")
    # incoming mail does not match the outgoing rule
    s = session(config(tmp_path / "in", rules), ip="192.0.2.1")
    run_message(s, "x@other.example", ["dave@example.com"], RAW)
    assert not (tmp_path / "in").exists()


def test_rules_by_sender_and_recipient_patterns(tmp_path: Path) -> None:
    rules = (
        '[[plugins.wiretap.archive]]\npath = "ceo"\nsenders = ["ceo@*"]\n'
        '[[plugins.wiretap.archive]]\npath = "sales/{user}"\nrecipients = ["sales*@example.com"]\n'
    )
    s = session(config(tmp_path, rules), ip="192.0.2.1")
    run_message(s, "ceo@example.com", ["sales1@example.com", "other@example.com"], RAW)
    only_file(tmp_path / "ceo" / "new")
    only_file(tmp_path / "sales" / "sales1" / "new")
    assert not (tmp_path / "sales" / "other").exists()


def test_values_from_the_message_cannot_escape_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    rules = '[[plugins.wiretap.archive]]\npath = "{domain}/{user}"\n'
    s = session(config(root, rules), ip="192.0.2.1")
    run_message(s, "a@example.org", ["../../../etc/passwd@..", "..@x/../y"], RAW)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(root in p.parents for p in files)


def _write_many(root: Path, first: int, count: int) -> None:
    rules = '[[plugins.wiretap.archive]]\npath = "all.mbox"\nformat = "mbox"\n'
    sessions = [session(config(root, rules), ip="192.0.2.1") for _ in range(count)]

    async def one(s: ChainSession, n: int) -> None:
        await s.mail("<a@example.org>", ())
        await s.rcpt("<b@example.com>", ())
        await s.header("Subject", f"message {n}")
        await s.body(b"From here on\r\n" + (f"line of message {n}\r\n" * 2000).encode())
        await s.eom()

    async def all_of_them() -> None:
        await asyncio.gather(*(one(s, first + i) for i, s in enumerate(sessions)))

    asyncio.run(all_of_them())


def test_mbox_concurrent_writers_neither_interleave_nor_lose(tmp_path: Path) -> None:
    # Two processes (fcntl locks) with ten threads each (the in-process lock).
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(tmp_path, 10 * i, 10)) for i in range(2)]
    for p in procs:
        p.start()
    _write_many(tmp_path, 20, 10)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    box = mailbox.mbox(str(tmp_path / "all.mbox"))
    subjects = sorted(m["Subject"] for m in box)
    assert subjects == sorted(f"message {n}" for n in range(30))
    for m in box:
        n = m["Subject"].split()[1]
        payload = m.get_payload(decode=False)
        assert payload.startswith(">From here on")  # mboxrd quoting
        assert payload.count(f"line of message {n}") == 2000
        assert "line of message" not in payload.replace(f"line of message {n}", "")
    assert stat.S_IMODE((tmp_path / "all.mbox").stat().st_mode) == 0o600


def test_unwritable_archive_tempfails_unless_best_effort(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")  # even root cannot make a dir below a file
    rules = '[[plugins.wiretap.archive]]\npath = "{user}"\n'
    s = session(config(blocker, rules), ip="192.0.2.1")
    with caplog.at_level("INFO", logger="miltrd"):
        out = run_message(s, "a@example.org", ["b@example.com"], RAW)
    assert out.final is not None and out.final.kind is VerdictKind.TEMPFAIL
    assert out.final.reply is not None and out.final.reply.code == 451
    assert "failed" in caplog.text
    s = session(config(blocker, rules + "best_effort = true\n"), ip="192.0.2.1")
    out = run_message(s, "a@example.org", ["b@example.com"], RAW)
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE


def test_wiretap_adds_the_copy_recipient_once(tmp_path: Path) -> None:
    rules = '[[plugins.wiretap.tap]]\nusers = ["alice@example.com", "@watched.example"]\ncopy_to = "legal@example.com"\n'
    s = session(config(tmp_path, rules), ip="192.0.2.1")
    out = run_message(s, "x@other.example", ["Alice@example.com", "b@example.com"], RAW)
    assert [m for m in out.changes if isinstance(m, RecipientAddition)] == [
        RecipientAddition("legal@example.com")
    ]
    s = session(config(tmp_path, rules), ip="10.0.0.1")
    out = run_message(s, "boss@watched.example", ["y@other.example"], RAW)
    assert [m.address for m in out.changes if isinstance(m, RecipientAddition)] == [
        "legal@example.com"
    ]
    s = session(config(tmp_path, rules), ip="192.0.2.1")
    out = run_message(s, "x@other.example", ["b@example.com"], RAW)
    assert out.changes == []


# --- after other plugins: one consistent message (case 21's kind) ------------

SWAP = (
    '[plugins.swap]\nuse = "tests.testplugins:SwapContent"\n'
    '[[plugins.wiretap.archive]]\npath = "all"\n'
)


def chain_config(root: Path, copy: str, chain: str = '["swap", "wiretap"]') -> str:
    return (
        f'[chain]\nplugins = {chain}\n[plugins.wiretap]\nroot = "{root}"\ncopy = "{copy}"\n' + SWAP
    )


def archived(root: Path) -> bytes:
    data = only_file(root / "all" / "new").read_bytes()
    return data.partition(b"X-Miltrd-Direction: incoming\r\n")[2]


def test_copy_as_received_after_a_plugin_changed_headers_and_body(tmp_path: Path) -> None:
    out = run_message(session(chain_config(tmp_path, "received")), "a@x.example", ["b@y"], RAW)
    assert out.changes  # the swap plugin did change the message
    assert archived(tmp_path) == RAW


def test_copy_as_delivered_has_the_new_headers_over_the_new_body(tmp_path: Path) -> None:
    run_message(session(chain_config(tmp_path, "delivered")), "a@x.example", ["b@y"], RAW)
    assert archived(tmp_path) == (
        b"From: a@example.org\r\nSubject: swapped\r\nX-Long: one\r\nX-Swapped: yes\r\n\r\n"
        b"new body\r\n"
    )


def test_an_observing_plugin_changes_nothing_wiretap_sees(tmp_path: Path) -> None:
    cfg = (
        f'[chain]\nplugins = ["swap", "wiretap"]\n[plugins.wiretap]\nroot = "{tmp_path}"\n'
        'copy = "delivered"\n[[plugins.wiretap.archive]]\npath = "all"\n'
        '[plugins.swap]\nuse = "tests.testplugins:SwapContent"\nmode = "observe"\n'
    )
    out = run_message(session(cfg), "a@x.example", ["b@y"], RAW)
    assert out.changes == []
    assert archived(tmp_path) == RAW


def test_observe_mode_archives_nothing(tmp_path: Path, caplog) -> None:
    import logging

    toml = config(tmp_path, 'mode = "observe"\n[[plugins.wiretap.archive]]\npath = "all"\n')
    with caplog.at_level(logging.INFO, logger="miltrd"):
        run_message(session(toml), "a@example.org", ["b@example.com"], RAW)
    assert not list(tmp_path.rglob("*"))  # no directory, no file
    assert "would archive to" in caplog.text
