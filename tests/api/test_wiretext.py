"""What miltrd writes into mail and SMTP replies is valid for every reader.

Property tests: any string in, a valid header field or reply out; read back
by Python's RFC 5322/2047 parser, the header gives the same text.
"""

from __future__ import annotations

import email
import email.policy
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from miltrd.api import (
    HeaderAddition,
    HeaderChange,
    HeaderInsertion,
    SmtpReply,
    reject,
    tempfail,
)
from miltrd.api.wiretext import fold_header, header_text, reply_lines

NAMES = st.text(alphabet=[c for c in string.printable[:94] if c != ":"], min_size=1, max_size=76)
# Words of every length (up to more than a line can hold) and every kind of
# character, with the white space between them that folding works with.
WORD = st.one_of(
    st.text(min_size=1, max_size=20),
    st.text(alphabet=string.ascii_letters + ".-_\"';,()", min_size=60, max_size=1200),
    st.text(alphabet="äöüßсчет€😀", min_size=1, max_size=200),
)
VALUES = st.one_of(
    st.text(max_size=3000),
    st.lists(st.tuples(st.sampled_from([" ", "  ", "\t", " \t "]), WORD), max_size=60).map(
        lambda parts: "".join(sep + word for sep, word in parts)
    ),
)


def read_back(name: str, folded: str) -> tuple[list[bytes], str]:
    """The header as the MTA writes it (LF -> CRLF) and as a reader parses it."""
    raw = f"{name}: {folded}".replace("\n", "\r\n").encode("ascii")
    msg = email.message_from_bytes(raw + b"\r\n\r\nbody\r\n", policy=email.policy.default)
    return raw.split(b"\r\n"), str(msg[name])


def assert_valid_field(name: str, folded: str) -> list[bytes]:
    assert folded.isascii(), folded
    assert "\r" not in folded
    raw = f"{name}: {folded}".replace("\n", "\r\n").encode("ascii")
    lines = raw.split(b"\r\n")
    for i, line in enumerate(lines):
        assert len(line) <= 998
        assert all(32 <= b < 127 or b == 9 for b in line), line
        if i:  # a continuation line: white space first, and not only that
            assert line[:1] in (b" ", b"\t") and line.strip(b" \t"), lines
    return lines


@settings(max_examples=300, deadline=None)
@given(NAMES, VALUES)
@example("X-Miltrd-Defang", "removed " + '"' + "Rechnung_" * 150 + '.pdf.exe"')
@example("X", "\u0441" * 2000)
@example("X", "a" + " " * 3000 + "b")
def test_any_value_gives_a_valid_header_field(name: str, value: str) -> None:
    assert_valid_field(name, fold_header(name, value))


@settings(max_examples=300, deadline=None)
@given(VALUES)
@example('removed "\u0441\u0447\u0435\u0442.exe" (file type .exe is not allowed)')
@example("ünïcödé " * 40)
@example("x" * 5000)
def test_the_reader_gets_the_same_text_back(value: str) -> None:
    # Text that itself looks like an encoded word is header syntax the
    # plugin wrote on purpose (a copied Subject keeps its encoded words).
    value = value.replace("=?", "= ?")
    _, text = read_back("X-Test", fold_header("X-Test", value))
    assert text == header_text(value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=string.ascii_letters, min_size=1, max_size=70), max_size=80))
def test_lines_stay_within_78_when_the_words_allow(words: list[str]) -> None:
    lines = assert_valid_field("X-Test", fold_header("X-Test", " ".join(words)))
    assert all(len(line) <= 78 for line in lines)


def test_header_text_rules() -> None:
    assert header_text("  a\r\nb\x00c\x7fd\u2028e  ") == "a b c d e"
    assert header_text("folded\n\tline") == "folded\tline"  # unfolded, not doubled
    assert header_text("x" + " " * 200 + "y") == "x" + " " * 78 + "y"
    assert header_text("caf\udcc3\udca9 \udcff") == "caf\u00e9 \ufffd"  # raw bytes from the wire


def test_case_19_one_line_per_file_not_one_line_of_1400() -> None:
    files = [f"Zahlungserinnerung_Rechnung_2024-{i:06d}_Kunde_4711.pdf.exe" for i in range(30)]
    value = "; ".join(f'removed "{f}" (file type .exe is not allowed)' for f in files)
    folded = HeaderAddition("X-Miltrd-Defang", value).value
    lines = assert_valid_field("X-Miltrd-Defang", folded)
    assert max(map(len, lines)) <= 78
    assert read_back("X-Miltrd-Defang", folded)[1] == value
    # every name stays whole on one line, so no reader finds it cut
    assert all(any(f in line.decode() for line in lines) for f in files)


def test_case_20_non_ascii_file_name_is_an_encoded_word() -> None:
    value = 'removed "\u0441\u0447\u0435\u0442.exe" (file type .exe is not allowed)'
    for mutation in (
        HeaderAddition("X-Miltrd-Defang", value),
        HeaderInsertion(0, "X-Miltrd-Defang", value),
        HeaderChange(1, "X-Miltrd-Defang", value),
    ):
        assert mutation.value.isascii() and "=?utf-8?" in mutation.value
        assert read_back("X-Miltrd-Defang", mutation.value)[1] == value


def test_delete_stays_a_delete_and_long_names_are_refused() -> None:
    assert HeaderChange(1, "X-A", "").value == ""
    with pytest.raises(ValueError, match="longer than 76"):
        HeaderAddition("X-" + "a" * 80, "v")


REPLY_TEXT = st.lists(st.text(max_size=1500), min_size=1, max_size=32)


@settings(max_examples=300, deadline=None)
@given(REPLY_TEXT, st.sampled_from([(550, "5.7.1"), (451, "4.3.0"), (554, None)]))
def test_any_reply_text_gives_valid_reply_lines(lines: list[str], code) -> None:
    code, xcode = code
    reply = SmtpReply(code, xcode, tuple(lines))
    prefix = f"{code} {xcode} " if xcode else f"{code} "
    ascii_lines = reply.wire_lines()
    assert 1 <= len(ascii_lines) <= 32
    for line in ascii_lines:
        assert all(" " <= c <= "~" or c == "\t" for c in line), line
        assert len(prefix) + len(line) + 2 <= 512
    for line in reply.wire_lines(smtputf8=True):
        assert line.isprintable() or "\t" in line
        assert len((prefix + line).encode("utf-8")) + 2 <= 512


@given(st.text(alphabet=string.ascii_letters + string.digits + " .,:;!", max_size=3000))
def test_ascii_reply_text_keeps_every_word(text: str) -> None:
    lines = reply_lines((text,), prefix=10)
    if len(lines) < 32:
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_case_20_reply_is_ascii_unless_smtputf8() -> None:
    verdict = reject('Attachment "\u0441\u0447\u0435\u0442.exe" refused: file type .exe')
    assert verdict.reply is not None
    assert verdict.reply.wire_lines() == ('Attachment "????.exe" refused: file type .exe',)
    assert verdict.reply.wire_lines(smtputf8=True) == verdict.reply.lines
    accented = tempfail("Pr\u00fcfung f\u00fcr \ufb01le").reply
    assert accented is not None and accented.wire_lines() == ("Prufung fur file",)


def test_long_reply_text_is_wrapped_not_cut() -> None:
    words = [f"word{i}" for i in range(300)]
    lines = reject(" ".join(words)).reply.wire_lines()  # type: ignore[union-attr]
    assert len(lines) > 1 and " ".join(lines).split() == words
