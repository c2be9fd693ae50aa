"""File names as the programs a recipient may use read them.

A mail client, an archiver, Windows Explorer and a C library can each see
a different name in the same header: a C string ends at the first NUL,
Windows drops trailing dots and spaces and stops at ``:`` (an alternate
data stream), a display shows look-alike letters as the Latin ones and
hides direction marks and zero-width characters. ``readings`` returns
every such reading of one name; a caller judges each and the strictest
wins.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable
from email.header import decode_header, make_header

__all__ = ["readings", "extension", "shown", "param_values", "names_in_fields"]

# Letters that render like the Latin letters used in file extensions
# (Unicode's confusables for a-z, restricted to the common scripts).
_LOOKALIKES = str.maketrans(
    # Cyrillic, Greek, Roman-numeral and other letters drawn like a-z, and
    # dots other than U+002E; written as escapes so the source shows them.
    "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0455\u0456\u0458\u0501\u04bb\u04cf\u051b\u051d\u0432\u043a\u043c\u043d\u0442\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0405\u0406\u0408\u03b1\u03b5\u03bf\u03c1\u03c4\u03c5\u03c7\u03bd\u03b9\u03ba\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a7\u03a5\u0131\u2113\u2170\u2174\u2179\u217c\u217d\u217e\u217f\u2024\u3002\uff61\u0701\u0702\ua4f8\u2e31\u00b7\u2219\u22c5",
    "aeopcyxsijdhlqwbkmhtabekmhopctxsijaeoptuxvikabezhikmnoptxyilivxlcdm..........",
)
_LOOSE = re.compile(r"""(?i)(?:^|[\s;])(?:file)?name\s*=\s*(?:"([^"]*)"?|([^\s;"]+))""")
_SEPARATORS = re.compile(r"[\\/]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _invisible(c: str) -> bool:
    # Format characters (bidi marks, zero-width joiners, BOM, soft hyphen)
    # and variation selectors are not drawn: a reader sees the name without them.
    return unicodedata.category(c) == "Cf" or "\ufe00" <= c <= "\ufe0f"


def _windows(name: str) -> str:
    """What Windows makes of a name: last path part, no stream suffix, no
    trailing dots or spaces."""
    return _SEPARATORS.split(name)[-1].rstrip(". \t\u3000\xa0")


def readings(name: str) -> set[str]:
    """Every plausible reading of ``name``, each with Windows' rules applied.

    Includes: the name as given; cut at the first NUL and at the first other
    control character; control characters dropped; invisible characters
    dropped; NFKC (full-width and compatibility forms) and look-alike letters
    folded to ASCII; percent-escapes undone; encoded words (RFC 2047) undone.
    """
    base = {name}
    if "=?" in name:
        # A broken encoded word is read as written.
        with contextlib.suppress(Exception):
            base.add(str(make_header(decode_header(name))))
    if "%" in name:
        base.add(urllib.parse.unquote(name, errors="surrogateescape"))
    out: set[str] = set()
    for text in base:
        cuts = {text, text.split("\x00", 1)[0], _CONTROL.split(text, 1)[0]}
        cuts.add(_CONTROL.sub("", text))
        for cut in cuts:
            visible = "".join(c for c in cut if not _invisible(c))
            folded = unicodedata.normalize("NFKC", visible).translate(_LOOKALIKES)
            for variant in (cut, visible, folded, _CONTROL.sub("", folded)):
                out.add(_windows(variant))
                # "run.exe:Zone.Identifier" names an NTFS stream of run.exe.
                out.add(_windows(_windows(variant).split(":", 1)[0]))
    out.discard("")
    return out


def extension(name: str) -> str:
    """The extension Windows would act on, lower-cased, "" when none."""
    name = name.lower()
    return name.rsplit(".", 1)[1].strip() if "." in name else ""


def shown(name: str) -> str:
    """A file name safe to put in a notice, a header or a reply line:
    printable characters (others become "?"), at most 120 of them. The
    plugin API makes what it writes valid: in a header a non-ASCII name
    becomes RFC 2047 encoded words (a reader sees it as sent), in an SMTP
    reply printable ASCII."""
    visible = "".join(c for c in unicodedata.normalize("NFKC", name) if not _invisible(c))
    text = "".join(c if c.isprintable() else "?" for c in _windows(visible) or visible)
    return text[:120] or "(unnamed)"


def param_values(value: str, wanted: str) -> list[str]:
    """Every value of parameter ``wanted`` (and its RFC 2231 forms) in one
    Content-Type or Content-Disposition value, read leniently: quotes and
    backslashes undone, a parameter given twice gives both values."""
    found: list[str] = []
    continued: dict[int, str] = {}
    charset_of_continued = "utf-8"
    for key, raw in _params(value):
        if key == wanted:
            found.append(raw)
        elif key == wanted + "*":
            found.append(_rfc2231(raw))
        elif key.startswith(wanted + "*"):
            index = key[len(wanted) + 1 :].rstrip("*")
            if index.isdigit():
                if key.endswith("*") and int(index) == 0 and raw.count("'") >= 2:
                    charset_of_continued, _, raw = raw.split("'", 2)
                    charset_of_continued = charset_of_continued or "utf-8"
                continued[int(index)] = (
                    urllib.parse.unquote(raw, errors="surrogateescape")
                    if key.endswith("*")
                    else raw
                )
    if continued:
        joined = "".join(continued[i] for i in sorted(continued))
        found.append(joined)
        with contextlib.suppress(LookupError):
            found.append(
                joined.encode("utf-8", "surrogateescape").decode(charset_of_continued, "replace")
            )
    return found


def _rfc2231(raw: str) -> str:
    if raw.count("'") >= 2:
        charset, _, text = raw.split("'", 2)
        try:
            return urllib.parse.unquote(text, encoding=charset or "utf-8", errors="replace")
        except LookupError:
            return urllib.parse.unquote(text, errors="replace")
    return urllib.parse.unquote(raw, errors="replace")


def _params(value: str) -> Iterable[tuple[str, str]]:
    """(lower-case key, value) for each ``key=value`` after the first ``;``."""
    pos = value.find(";")
    if pos < 0:
        return
    text = value[pos + 1 :]
    i = 0
    while i < len(text):
        m = re.compile(r"[\s;]*([^=;\s]+)\s*=\s*").match(text, i)
        if not m:
            nxt = text.find(";", i)
            if nxt < 0:
                return
            i = nxt + 1
            continue
        key = m.group(1).lower()
        i = m.end()
        if i < len(text) and text[i] == '"':
            out = []
            i += 1
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                out.append(text[i])
                i += 1
            i += 1
            yield key, "".join(out)
        else:
            end = text.find(";", i)
            end = len(text) if end < 0 else end
            yield key, text[i:end].strip()
            i = end + 1


def names_in_fields(fields: list[tuple[str, str]]) -> list[str]:
    """Every file name a reader could take from a part's header fields:
    ``name`` on each Content-Type, ``filename`` on each Content-Disposition,
    in RFC 2231 and RFC 2047 forms, and as the email package reads them."""
    names: list[str] = []
    for key, value in fields:
        lkey = key.lower()
        if lkey == "content-type":
            names += param_values(value, "name")
            names += param_values(value, "filename")  # some clients take this too
        elif lkey == "content-disposition":
            names += param_values(value, "filename")
            names += param_values(value, "name")  # some clients take this too
        elif lkey == "content-description" and re.fullmatch(r"[^\s/\\]+\.[A-Za-z0-9]{1,12}", value):
            names.append(value)  # clients show it as the name when no other is given
    for key, value in fields:
        if key.lower() in ("content-type", "content-disposition"):
            # Some clients find the parameter without the ";" before it.
            for m in _LOOSE.finditer(value):
                names.append(m.group(1) if m.group(1) is not None else m.group(2))
    out = []
    for n in names:
        n = n.strip()
        if n.startswith('"') and n.endswith('"') and len(n) >= 2:
            n = email.utils.unquote(n)
        if n and n not in out:
            out.append(n)
    return out
