"""defang and boundary lines that programs read differently (issue 15).

RFC 2046 §5.1.1's grammar allows only white space after the boundary on a
delimiter line (Python's parser and Thunderbird read it so); the same
section's note to implementors, and clients that follow it, take any line
that starts with the boundary. A part that only one reading shows is
judged all the same."""

from __future__ import annotations

import base64
import email
import email.policy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from miltrd.plugins._decode import BytesSource
from miltrd.plugins._mimewalk import Limits, parse_tree
from miltrd.plugins._render import splice

from miltrd.api import HeaderAddition, VerdictKind

from .test_defang import PE, defang, new_body

PE_B64 = base64.encodebytes(PE).replace(b"\n", b"\r\n")
HEAD = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n"


def junk_message(tail: bytes, exe_named: bool = True) -> bytes:
    """A text part, then a line ``--b1`` + ``tail``, then an executable
    part: to Python the executable is words in the text part."""
    name = b'; name="setup.exe"' if exe_named else b""
    return (
        HEAD + b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nHello.\r\n"
        b"--b1" + tail + b"\r\n"
        b"Content-Type: application/octet-stream" + name + b"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + PE_B64 + b"--b1--\r\n"
    )


def header_value(out) -> str:
    (header,) = [m for m in out.changes if isinstance(m, HeaderAddition)]
    return header.value.replace("\n", "")


def parse(body: bytes) -> email.message.Message:
    return email.message_from_bytes(
        HEAD + b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n' + body,
        policy=email.policy.default,
    )


@pytest.mark.parametrize(
    "tail", [b"junk", b"x", b"_2", b" junk", b"\t;", b"\x0c", b"==", b"-x", b"--junk", b" --"]
)
@pytest.mark.parametrize("exe_named", [True, False])
def test_a_part_after_a_boundary_line_with_more_on_it_is_judged(
    tmp_path, tail: bytes, exe_named: bool
) -> None:
    raw = junk_message(tail, exe_named)
    # Python's reading: one text part holding the rest as words.
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert len(list(msg.iter_parts())) == 1
    out = defang(tmp_path, raw)
    body = new_body(out)
    assert body is not None, f"--b1{tail!r} hid the executable"
    assert PE_B64[:40] not in body and b"Hello." in body
    assert ("setup.exe" if exe_named else "executable") in header_value(out)
    # What is delivered still reads as before to Python: the text part.
    assert parse(body).get_body(("plain",)) is not None


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tail=st.binary(min_size=1, max_size=12).filter(
        # "--" and white space only: the closing delimiter in every reading
        lambda t: b"\n" not in t and b"\r" not in t and t.rstrip(b" \t") != b"--"
    )
)
def test_any_tail_after_the_boundary_still_shows_the_part(tmp_path, tail: bytes) -> None:
    out = defang(tmp_path, junk_message(tail))
    body = new_body(out)
    assert body is not None and PE_B64[:40] not in body


def test_a_loose_boundary_line_is_malformed_and_on_malformed_applies(tmp_path) -> None:
    raw = junk_message(b"junk")
    out = defang(tmp_path, raw, 'on_malformed = "ban"\n')
    assert out.final is not None and out.final.kind is VerdictKind.REJECT
    out = defang(tmp_path, raw, 'on_malformed = "tempfail"\n')
    # The executable is found and removed; the fault alone would tempfail.
    assert new_body(out) is not None
    harmless = raw.replace(PE_B64, base64.encodebytes(b"plain words").replace(b"\n", b"\r\n"))
    harmless = harmless.replace(b'name="setup.exe"', b'name="notes.txt"')
    out = defang(tmp_path, harmless, 'on_malformed = "tempfail"\n')
    assert out.final is not None and out.final.kind is VerdictKind.TEMPFAIL
    assert defang(tmp_path, harmless).changes == []  # on_malformed = "allow", the default


def nested(outer: bytes, inner: bytes, name: bytes, data: bytes) -> bytes:
    """multipart/mixed (``outer``) holding text and a multipart/mixed
    (``inner``) holding text and an attachment."""
    return (
        HEAD + b'Content-Type: multipart/mixed; boundary="' + outer + b'"\r\n\r\n'
        b"--" + outer + b"\r\nContent-Type: text/plain\r\n\r\nOuter text.\r\n"
        b"--" + outer + b'\r\nContent-Type: multipart/mixed; boundary="' + inner + b'"\r\n\r\n'
        b"--" + inner + b"\r\nContent-Type: text/plain\r\n\r\nInner text.\r\n"
        b"--" + inner + b'\r\nContent-Type: application/octet-stream; name="' + name + b'"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(data).replace(b"\n", b"\r\n")
        + b"--" + inner + b"--\r\n"
        b"--" + outer + b"--\r\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("outer", "inner"), [(b"b1", b"b1x"), (b"b1x", b"b1"), (b"=_P", b"=_P_1"), (b"b1", b"b1--x")]
)
def test_a_boundary_that_starts_another_one(tmp_path, outer: bytes, inner: bytes) -> None:
    clean = nested(outer, inner, b"report.pdf", b"%PDF-1.4 words")
    # Nothing to remove: left as it was, and no fault held against it.
    assert defang(tmp_path, clean, 'on_malformed = "ban"\n').changes == []
    raw = nested(outer, inner, b"report.pdf", PE)
    out = defang(tmp_path, raw, 'on_malformed = "ban"\n')
    body = new_body(out)
    assert body is not None and PE_B64[:40] not in body
    # The notice sits where the executable was, in the inner multipart.
    msg = email.message_from_bytes(
        HEAD + b'Content-Type: multipart/mixed; boundary="' + outer + b'"\r\n\r\n' + body,
        policy=email.policy.default,
    )
    _, inner_part = msg.iter_parts()
    texts = [p.get_content() for p in inner_part.iter_parts()]
    assert texts[0].strip() == "Inner text." and "was removed" in texts[1]
    assert header_value(out).count("report.pdf") == 1  # one part, judged once


@pytest.mark.parametrize(
    ("param", "line"),
    [
        (b'"b1"', b"--b1 \t"),  # transport padding after the boundary
        (b'"b1 "', b"--b1 "),  # a boundary that ends in a space (RFC 2046 forbids it)
        (b'"b1 "', b"--b1"),  # ... written without it
        (b"b1 ", b"--b1"),  # unquoted, the space is the parameter's end to most readers
    ],
)
def test_boundaries_with_trailing_white_space(tmp_path, param: bytes, line: bytes) -> None:
    raw = (
        HEAD + b"Content-Type: multipart/mixed; boundary=" + param + b"\r\n\r\n"
        + line + b"\r\nContent-Type: text/plain\r\n\r\nHello.\r\n"
        + line + b'\r\nContent-Type: application/octet-stream; name="a.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + PE_B64 + line + b"--\r\n"
    )  # fmt: skip
    body = new_body(defang(tmp_path, raw))
    assert body is not None and PE_B64[:40] not in body and b"Hello." in body


def test_the_loose_reading_gives_the_parts_python_does_not() -> None:
    raw = junk_message(b"junk")
    headers, _, body = raw.partition(b"\r\n\r\n")
    fields = [
        (n.decode(), v.decode().strip())
        for n, _, v in (line.partition(b":") for line in headers.split(b"\r\n"))
    ]
    root, problems = parse_tree(BytesSource(body), fields, Limits())
    assert problems == []
    kinds = [(p.content_type, p.alternate) for p in root.children]
    assert kinds == [
        ("text/plain", False),  # the grammar's reading: one text part
        ("text/plain", True),  # the implementors': the text ...
        ("application/octet-stream", True),  # ... and the executable
    ]
    assert any("RFC 2046 §5.1.1" in d for d in root.defects)


def test_splice_removes_what_either_of_two_overlapping_edits_covers() -> None:
    from io import BytesIO

    sink = BytesIO()
    src = BytesSource(b"0123456789abcdefghij")
    splice(src, [(2, 8, b"[A]"), (5, 12, b"[B]"), (3, 4, b"[C]")], sink)
    assert sink.getvalue() == b"01[A][B]cdefghij"


def test_a_part_after_the_closing_delimiter_is_judged(tmp_path) -> None:
    raw = junk_message(b"").replace(
        b"--b1\r\nContent-Type: application", b"--b1--\r\n--b1\r\nContent-Type: application"
    )
    # Python keeps the rest as the epilogue; parsers that split at every
    # delimiter show the executable.
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert len(list(msg.iter_parts())) == 1 and "setup.exe" in msg.epilogue
    body = new_body(defang(tmp_path, raw))
    assert body is not None and PE_B64[:40] not in body
