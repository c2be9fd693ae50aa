"""Text miltrd writes for others to read: header fields and SMTP replies.

Every header value and reply text a plugin hands to the API passes through
here, so each plugin, built in or not, writes only what every MTA and mail
reader accepts:

- a header field (RFC 5322 §2.1.1, §2.2.3) is 7-bit: a word with non-ASCII
  characters becomes RFC 2047 encoded words (UTF-8); lines are folded at
  white space to 78 characters where the words allow, and no line is ever
  longer than 998 octets (a word too long for that is carried in encoded
  words, which can be split anywhere);
- an SMTP reply line (RFC 5321 §4.5.3.1.5) is at most 512 octets with its
  code and CRLF, so long texts are wrapped into more lines (at most 32, as
  libmilter allows); the text is printable ASCII unless the client asked
  for SMTPUTF8 (RFC 6531), where UTF-8 may stay.

Folds are written as LF followed by the white space that was there: both
Postfix and Sendmail take an embedded LF in a milter's header value as a
line break and write CRLF on the wire.
"""

from __future__ import annotations

import base64
import re
import unicodedata

__all__ = [
    "MAX_NAME",
    "SOFT_LIMIT",
    "HARD_LIMIT",
    "clean_text",
    "header_text",
    "fold_header",
    "reply_lines",
]

SOFT_LIMIT = 78  # RFC 5322: lines SHOULD be no longer than this
HARD_LIMIT = 998  # RFC 5322: lines MUST be no longer than this (without CRLF)
MAX_NAME = 76  # a longer field name leaves no room on its first line
_MAX_WSP = 78  # longer runs of white space are cut: a fold cannot split them
_MAX_WORD = 900  # a longer ASCII word goes into encoded words
_REPLY_LINE = 512  # RFC 5321 §4.5.3.1.5, with the code and CRLF
_REPLY_LINES = 32  # libmilter's MAXREPLIES

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators:
# every character some reader takes as the end of a line or a command.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]+")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_WSP_RUN = re.compile(r"[ \t]{" + str(_MAX_WSP + 1) + ",}")
_TOKEN = re.compile(r"([ \t]*)([^ \t]+)")
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_EW_ROOM = 75 - len("=?utf-8?q??=")  # RFC 2047 §2: an encoded word is at most 75


def clean_text(value: str) -> str:
    """Collapse CR, LF and other control characters (not TAB) to one space."""
    return _CONTROL.sub(" ", value)


def _valid_unicode(value: str) -> str:
    # Values copied from the wire carry bytes that were not UTF-8 as lone
    # surrogates; they have no meaning a reader could be told, so they
    # become U+FFFD.
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def header_text(value: str) -> str:
    """The text a reader gets back from the header miltrd writes for ``value``.

    A value that is already folded is unfolded first (RFC 5322 §2.2.3: a
    line break before white space is removed). Other control characters
    (CR and LF among them) become spaces, white space at
    either end is dropped (a reader drops it too), runs of white space are
    cut to 78 characters, bytes that were not UTF-8 become U+FFFD.
    """
    text = clean_text(_FOLD.sub("", _valid_unicode(value))).strip(" \t")
    return _WSP_RUN.sub(lambda m: m.group(0)[:_MAX_WSP], text)


def _q_word(data: bytes) -> str:
    return "".join(chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in data)


def _encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 encoded words, each at most 75 characters, split
    between characters (never inside one), Q or B, whichever is shorter."""
    q_words: list[str] = []
    b_chunks: list[bytes] = []
    q_cur = ""
    b_cur = b""
    for ch in text:
        raw = ch.encode("utf-8")
        piece = _q_word(raw)
        if len(q_cur) + len(piece) > _EW_ROOM:
            q_words.append(q_cur)
            q_cur = ""
        q_cur += piece
        if len(b_cur) + len(raw) > 45:  # 45 bytes -> 60 base64 characters
            b_chunks.append(b_cur)
            b_cur = b""
        b_cur += raw
    q_words.append(q_cur)
    b_chunks.append(b_cur)
    q_out = [f"=?utf-8?q?{w}?=" for w in q_words]
    b_out = [f"=?utf-8?b?{base64.b64encode(c).decode('ascii')}?=" for c in b_chunks]
    return q_out if sum(map(len, q_out)) <= sum(map(len, b_out)) else b_out


def _needs_encoding(word: str) -> bool:
    return not word.isascii() or len(word) > _MAX_WORD


def fold_header(name: str, value: str) -> str:
    """The header value as miltrd sends it for field ``name``.

    Returns 7-bit text folded with LF + white space; with ``name`` and the
    space an MTA puts after the colon, no line is longer than 998 octets,
    and lines stay within 78 where no single word is longer. Parsed back by
    an RFC 5322/2047 reader it gives ``header_text(value)``. Raises
    ValueError for a field name longer than 76 characters.
    """
    if len(name) > MAX_NAME:
        raise ValueError(f"header field name longer than {MAX_NAME} characters")
    text = header_text(value)
    if text.isascii() and len(name) + 2 + len(text) <= SOFT_LIMIT:
        return text
    # (separator, piece): each piece is an ASCII word or one encoded word.
    pieces: list[tuple[str, str]] = []
    tokens = _TOKEN.findall(text)
    i = 0
    while i < len(tokens):
        sep, word = tokens[i]
        if not _needs_encoding(word):
            pieces.append((sep, word))
            i += 1
            continue
        # Neighbouring words that need encoding go into one run, their
        # white space inside it: a reader drops white space between
        # adjacent encoded words.
        run = word
        i += 1
        while i < len(tokens) and _needs_encoding(tokens[i][1]):
            run += tokens[i][0] + tokens[i][1]
            i += 1
        words = _encoded_words(run)
        pieces.append((sep, words[0]))
        pieces += [(" ", w) for w in words[1:]]
    out: list[str] = []
    used = len(name) + 2
    for sep, piece in pieces:
        if not out:
            out.append(piece)
            used += len(piece)
        elif used + len(sep) + len(piece) <= SOFT_LIMIT:
            out.append(sep + piece)
            used += len(sep) + len(piece)
        else:
            out.append("\n" + sep + piece)
            used = len(sep) + len(piece)
    return "".join(out)


def _ascii(text: str) -> str:
    # Keep what a reader would recognise: accents dropped from Latin
    # letters, compatibility forms (full-width, ligatures) to their ASCII
    # letters; the rest becomes "?", as Postfix does with what it cannot print.
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(c if " " <= c <= "~" else "?" for c in kept)


def _printable(text: str) -> str:
    # UTF-8 for an SMTPUTF8 client, still without format characters,
    # unassigned code points or private use that a terminal cannot show.
    if text.isascii():
        return text
    return "".join(
        c if c.isprintable() or c == "\t" else " " if unicodedata.category(c) == "Zs" else "?"
        for c in text
    )


def _wrap(text: str, room: int) -> list[str]:
    def octets(s: str) -> int:
        return len(s.encode("utf-8"))

    lines: list[str] = []
    cur = ""
    for sep, word in _TOKEN.findall(text):
        candidate = cur + sep + word if cur else word
        if octets(candidate) <= room:
            cur = candidate
            continue
        if cur:
            lines.append(cur)
        cur = word
        while octets(cur) > room:  # a word longer than a line: cut it
            cut = room
            while octets(cur[:cut]) > room:
                cut -= 1
            lines.append(cur[:cut])
            cur = cur[cut:]
    if cur or not lines:
        lines.append(cur)
    return lines


def reply_lines(
    lines: tuple[str, ...] | list[str], *, prefix: int, smtputf8: bool = False
) -> tuple[str, ...]:
    """Reply text lines as they may be sent (RFC 5321 §4.2, §4.5.3.1.5).

    ``prefix`` is the length of what precedes the text on each line ("550
    5.7.1 " is 10). Each line comes back printable ASCII (UTF-8 kept only
    with ``smtputf8``), wrapped at white space so that no reply line with
    its code and CRLF passes 512 octets, and at most 32 lines in all (the
    last one cut short with "..." when there is more).
    """
    room = _REPLY_LINE - 2 - prefix
    out: list[str] = []
    for line in lines:
        text = clean_text(_valid_unicode(line)).strip(" \t")
        text = _printable(text) if smtputf8 else _ascii(text)
        out += _wrap(text, room)
    if len(out) > _REPLY_LINES:
        out = out[:_REPLY_LINES]
        last = out[-1]
        while len((last + "...").encode("utf-8")) > room:
            last = last[:-1]
        out[-1] = last + "..."
    return tuple(out)
