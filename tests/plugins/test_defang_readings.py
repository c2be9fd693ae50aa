"""defang where programs read a message differently: every reading is
judged and the strictest wins (issue 15, cases 16 and 17 and their kinds)."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import quopri
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miltrd.api import BodyReplacement, HeaderAddition, VerdictKind
from miltrd.mta import split_message

from .helpers import run_message, session
from .test_defang import PE, config, defang, new_body

CASES = Path(__file__).resolve().parents[1] / "cases"  # copies of the inputs
PE_B64 = base64.encodebytes(PE).replace(b"\n", b"\r\n")
TOP = (
    b"From: a@example.org\r\nTo: b@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain\r\n\r\nHello.\r\n\r\n"
)


def with_part(part: bytes) -> bytes:
    """A two-part message whose second part is ``part`` (headers and content)."""
    return TOP + b"--b1\r\n" + part + b"\r\n--b1--\r\n"


def removed(out) -> str:
    """The X-Miltrd-Defang value; fails when nothing was removed."""
    body = new_body(out)
    assert body is not None, "nothing was removed"
    assert PE not in body and PE_B64[:40] not in body
    (header,) = [m for m in out.changes if isinstance(m, HeaderAddition)]
    return header.value.replace("\n", "")  # unfolded: long values are folded


def parsed(raw: bytes, body: bytes) -> email.message.EmailMessage:
    headers, _ = split_message(raw)
    head = "".join(f"{n}: {v}\r\n" for n, v in headers).encode()
    msg = email.message_from_bytes(head + b"\r\n" + body, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


# --- case 16 and its kind: headers a lenient client still reads -------------


def test_case_16_unindented_parameter_line(tmp_path: Path) -> None:
    raw = (CASES / "16-unindented-param-line.eml").read_bytes()
    out = defang(tmp_path, raw)
    assert 'removed "invoice.exe"' in removed(out)
    body = new_body(out) or b""
    assert b"TVqQ" not in body and b"Please find the invoice attached." in body
    out = defang(tmp_path, raw, 'action = "reject"\n')
    assert out.final is not None and out.final.kind is VerdictKind.REJECT
    assert out.final.reply is not None and "invoice.exe" in out.final.reply.lines[0]


@pytest.mark.parametrize(
    "head",
    [
        # name= on an unindented line after ";" (case 16)
        b'Content-Type: application/octet-stream; x-unix-mode=0600;\r\nname="report.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n",
        # filename= the same way, on Content-Disposition
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment;\r\nfilename="report.exe"\r\n',
        # the unindented line is the only place the encoding is named
        b'Content-Type: application/octet-stream;\r\nname="report.pdf"; x=1;\r\n'
        b"Content-Transfer-Encoding: base64\r\n",
        # the unindented parameter holds a colon, so it looks like a field
        b'Content-Type: application/octet-stream;\r\nname="C:run.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Type: application/octet-stream;\r\n name=x;\r\nfilename=a:b.exe\r\n"
        b"Content-Transfer-Encoding: base64\r\n",
        # a name split over two unindented lines by RFC 2231 continuations
        b'Content-Type: application/octet-stream;\r\nname*0="rep";\r\nname*1="ort.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n",
    ],
)
def test_unindented_parameter_lines_are_read(tmp_path: Path, head: bytes) -> None:
    removed(defang(tmp_path, with_part(head + b"\r\n" + PE_B64)))
    if b"report.pdf" not in head:
        # The name alone decides, whatever the content.
        harmless = base64.encodebytes(b"just text").replace(b"\n", b"\r\n")
        out = defang(tmp_path, with_part(head + b"\r\n" + harmless))
        assert "file type .exe is not allowed" in removed_or_any(out)


@pytest.mark.parametrize(
    "head",
    [
        # two Content-Types: one harmless, one banned (either order)
        b"Content-Type: text/plain\r\nContent-Type: application/x-msdownload\r\n",
        b"Content-Type: application/x-msdownload\r\nContent-Type: text/plain\r\n",
        # two Content-Transfer-Encodings: a reader that takes base64 sees the program
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: 7bit\r\n"
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Transfer-Encoding: 7bit\r\n",
        # an encoding named with junk after it
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: Base64; x\r\n",
        # a name on Content-Type and another on Content-Disposition (either one banned)
        b'Content-Type: application/octet-stream; name="photo.jpg"\r\n'
        b'Content-Disposition: attachment; filename="photo.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n",
        b'Content-Type: application/octet-stream; name="photo.exe"\r\n'
        b'Content-Disposition: attachment; filename="photo.jpg"\r\n'
        b"Content-Transfer-Encoding: base64\r\n",
        # one parameter given twice
        b'Content-Type: application/octet-stream; name="a.jpg"; name="a.scr"\r\n'
        b"Content-Transfer-Encoding: base64\r\n",
        b'Content-Disposition: attachment; filename="a.vbs"; filename="a.txt"\r\n'
        b"Content-Transfer-Encoding: base64\r\n",
        # two Content-Disposition fields
        b'Content-Disposition: inline; filename="a.txt"\r\n'
        b'Content-Disposition: attachment; filename="a.bat"\r\n',
    ],
)
def test_duplicate_headers_and_parameters_strictest_wins(tmp_path: Path, head: bytes) -> None:
    # Where names or types decide, the content is harmless: only the
    # reading under test can find the part.
    about_encoding = head.count(b"Transfer-Encoding") > 1 or b"Base64; x" in head
    content = PE_B64 if about_encoding else b"just some harmless text\r\n"
    out = defang(tmp_path, with_part(head + b"\r\n" + content))
    assert new_body(out) is not None, head


def test_duplicate_cte_sniffs_every_decoding(tmp_path: Path) -> None:
    # Harmless name and type: only decoding by the second encoding shows the program.
    head = (
        b'Content-Type: image/jpeg; name="cat.jpg"\r\nContent-Transfer-Encoding: 7bit\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
    )
    value = removed(defang(tmp_path, with_part(head + b"\r\n" + PE_B64)))
    assert "Windows executable" in value


@pytest.mark.parametrize(
    "ctype",
    [
        b"Content-Type: multipart/mixed\r\n",  # no boundary at all
        b'Content-Type: multipart/mixed; boundary="wrong"\r\n',  # one that never occurs
        b'Content-Type: multipart/mixed; boundary="zz\r\n',  # an unclosed quote
    ],
)
def test_missing_or_wrong_boundary_is_guessed_like_clients_do(tmp_path: Path, ctype: bytes) -> None:
    raw = (
        b"From: a@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\n" + ctype + b"\r\n"
        b"--zz\r\nContent-Type: text/plain\r\n\r\nHello.\r\n"
        b'--zz\r\nContent-Type: application/octet-stream; name="x.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + PE_B64 + b"--zz--\r\n"
    )
    out = defang(tmp_path, raw)
    assert 'removed "x.exe"' in removed(out)
    assert b"Hello." in (new_body(out) or b"")
    # With on_malformed = "tempfail" the broken structure itself is reason enough.
    strict = defang(tmp_path, raw, 'on_malformed = "tempfail"\n')
    assert strict.final is not None


def test_text_after_a_broken_multipart_is_still_judged(tmp_path: Path) -> None:
    # No boundary and no "--" line: the content is judged as one leaf.
    raw = (
        b"From: a@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed\r\n\r\n"
        b"begin 644 run.exe\r\n"
        + binascii.b2a_uu(PE[:45]).replace(b"\n", b"\r\n")
        + b"`\r\nend\r\n"
    )
    assert "run.exe" in removed(defang(tmp_path, raw))


# --- file names as other programs read them ---------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "photo.exe\x00.jpg",  # a C string ends at the NUL
        "photo.exe\x01.jpg",  # another control character
        "photo.exe\r\n.jpg",
        "report.exe...",  # Windows drops trailing dots and spaces
        "report.exe \u3000",
        "report.\u0435\u0445\u0435",  # Cyrillic look-alikes of "exe"
        "report\uff0e\uff45\uff58\uff45",  # full-width ".exe"
        "report\u2024exe",  # ONE DOT LEADER looks like a dot
        "report.e\u200bxe",  # a zero-width space inside the extension
        "report.e\u00adxe",  # a soft hyphen, not drawn
        "invoice\u202efdp.exe",  # right-to-left override
        "invoice\u2066.pdf\u2069.exe",
        "run.exe:Zone.Identifier",  # an NTFS stream of run.exe
        "C:\\temp\\run.bat",
        "run%2Eexe",
    ],
)
def test_file_name_readings(tmp_path: Path, name: str) -> None:
    for header in (
        "Content-Type: application/octet-stream; name",
        "Content-Disposition: attachment; filename*",
    ):
        if "\r" in name and not header.endswith("*"):
            continue  # a raw line break cannot stand in a quoted string
        if header.endswith("*"):
            value = "utf-8''" + "".join(
                c if c.isalnum() and c.isascii() else "".join(f"%{b:02X}" for b in c.encode())
                for c in name
            )
        else:
            value = '"' + name.replace("\\", "\\\\").replace("\r\n", "") + '"'
        raw = with_part(header.encode() + b"=" + value.encode() + b"\r\n\r\nharmless bytes\r\n")
        out = defang(tmp_path, raw)
        assert new_body(out) is not None, (header, name)
        written = next(m for m in out.changes if isinstance(m, HeaderAddition)).value
        # 7-bit and printable on every line; folds are LF + white space
        assert written.isascii()
        assert all(line.isprintable() for line in written.split("\n"))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stem=st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), min_size=1, max_size=8),
    ext=st.sampled_from(["exe", "scr", "js", "vbs", "bat", "lnk", "hta"]),
    upper=st.booleans(),
    decoration=st.sampled_from(
        ["", ".", " .", "\x00.pdf", "\x00", "\u200b", "\u202e", ":x", "\ufeff"]
    ),
    split=st.integers(min_value=0, max_value=3),
    invisible=st.sampled_from(["", "\u200b", "\u200d", "\u2060", "\u00ad", "\ufe0f"]),
)
def test_any_decorated_banned_name_is_caught(
    tmp_path: Path, stem: str, ext: str, upper: bool, decoration: str, split: int, invisible: str
) -> None:
    ext = ext.upper() if upper else ext
    cut = min(split, len(ext))
    name = f"{stem}.{ext[:cut]}{invisible}{ext[cut:]}{decoration}"
    header = b'Content-Type: application/octet-stream; name="' + name.encode() + b'"\r\n'
    out = defang(tmp_path, with_part(header + b"\r\nplain words\r\n"))
    assert new_body(out) is not None, repr(name)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stem=st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), min_size=1, max_size=10),
    ext=st.sampled_from(["pdf", "jpg", "docx", "txt", "png", "csv"]),
)
def test_harmless_names_stay(tmp_path: Path, stem: str, ext: str) -> None:
    header = f'Content-Disposition: attachment; filename="{stem}.{ext}"\r\n'.encode()
    assert defang(tmp_path, with_part(header + b"\r\nplain words\r\n")).changes == []


# --- case 17 and its kind: containers in forbidden encodings ----------------


def _inner_message() -> bytes:
    return (
        b"From: c@example.net\r\nSubject: tool\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="in1"\r\n\r\n'
        b"--in1\r\nContent-Type: text/plain\r\n\r\nHere is the tool.\r\n\r\n"
        b'--in1\r\nContent-Type: application/octet-stream; name="setup.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + PE_B64 + b"\r\n--in1--\r\n"
    )


def _encoded(data: bytes, cte: str) -> bytes:
    if cte == "base64":
        return base64.encodebytes(data).replace(b"\n", b"\r\n")
    if cte == "quoted-printable":
        return quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    return data


def test_case_17_base64_message_rfc822(tmp_path: Path) -> None:
    raw = (CASES / "17-base64-message-rfc822.eml").read_bytes()
    out = defang(tmp_path, raw)
    assert 'removed "setup.exe"' in removed(out)
    msg = parsed(raw, new_body(out) or b"")
    forwarded = [p for p in msg.walk() if p.get_content_type() == "message/rfc822"]
    assert len(forwarded) == 1
    # The forwarded message is still there, still base64, without the program.
    body = new_body(out) or b""
    marker = b'filename="tool.eml"\r\n\r\n'
    start = body.index(marker) + len(marker)
    inner = base64.b64decode(body[start : body.index(b"--out1--")])
    assert b"Here is the tool." in inner and b"TVqQ" not in inner
    assert b"was removed by the mail filter" in inner.replace(b"=\r\n", b"")
    out = defang(tmp_path, raw, 'action = "reject"\n')
    assert out.final is not None and out.final.kind is VerdictKind.REJECT


@pytest.mark.parametrize("cte", ["base64", "quoted-printable", "x-uuencode"])
def test_encoded_attached_message_is_walked(tmp_path: Path, cte: str) -> None:
    inner = _inner_message()
    if cte == "x-uuencode":
        content = (
            b"begin 644 fwd.eml\r\n"
            + b"".join(
                binascii.b2a_uu(inner[i : i + 45]).replace(b"\n", b"\r\n")
                for i in range(0, len(inner), 45)
            )
            + b"`\r\nend\r\n"
        )
    else:
        content = _encoded(inner, cte)
    part = (
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: "
        + cte.encode()
        + b"\r\n\r\n"
        + content
    )
    out = defang(tmp_path, with_part(part))
    assert 'removed "setup.exe"' in removed(out)
    body = new_body(out) or b""
    assert b"Hello." in body


@pytest.mark.parametrize("cte", ["base64", "quoted-printable"])
def test_encoded_multipart_is_walked(tmp_path: Path, cte: str) -> None:
    inner = (
        b"--in1\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b'--in1\r\nContent-Type: application/octet-stream; name="a.js"\r\n\r\nalert(1)\r\n--in1--\r\n'
    )
    part = (
        b'Content-Type: multipart/mixed; boundary="in1"\r\nContent-Transfer-Encoding: '
        + cte.encode()
        + b"\r\n\r\n"
        + _encoded(inner, cte)
    )
    assert 'removed "a.js"' in removed_or_any(defang(tmp_path, with_part(part)))


def removed_or_any(out) -> str:
    (header,) = [m for m in out.changes if isinstance(m, HeaderAddition)]
    return header.value.replace("\n", "")  # unfolded: long values are folded


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    layers=st.lists(
        st.tuples(
            st.sampled_from(["message", "multipart"]),
            st.sampled_from(["7bit", "base64", "quoted-printable"]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_nested_encoded_containers_to_the_configured_depth(tmp_path: Path, layers) -> None:
    entity = (
        b'Content-Type: application/octet-stream; name="deep.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + PE_B64
    )
    for i, (kind, cte) in enumerate(layers):
        if kind == "message":
            content = b"From: x@example.net\r\nSubject: s\r\n" + entity
            head = b"Content-Type: message/rfc822\r\n"
        else:
            b = f"L{i}".encode()
            content = b"--" + b + b"\r\n" + entity + b"\r\n--" + b + b"--\r\n"
            head = b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n'
        entity = (
            head
            + b"Content-Transfer-Encoding: "
            + cte.encode()
            + b"\r\n\r\n"
            + _encoded(content, cte)
        )
    out = defang(tmp_path, with_part(entity))
    body = new_body(out)
    assert body is not None
    assert "deep.exe" in removed_or_any(out)
    # What is left still parses, and nowhere in it is the program.
    for part in parsed(with_part(entity), body).walk():
        payload = part.get_payload(decode=True) if not part.is_multipart() else b""
        assert PE not in (payload or b"")


def test_encoded_container_past_the_size_bound_goes_through_on_limit(tmp_path: Path) -> None:
    part = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n" + _encoded(
        _inner_message(), "base64"
    )
    out = defang(tmp_path, with_part(part), "max_decoded_size = 100\n")
    assert out.final is not None and out.final.kind is VerdictKind.REJECT
    out = defang(tmp_path, with_part(part), 'max_decoded_size = 100\non_limit = "tempfail"\n')
    assert out.final is not None and out.final.kind is VerdictKind.TEMPFAIL


def test_container_past_the_depth_bound_goes_through_on_limit(tmp_path: Path) -> None:
    entity = b"Content-Type: text/plain\r\n\r\nx\r\n"
    for _ in range(4):
        content = b"From: x@example.net\r\n" + entity
        entity = (
            b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + _encoded(content, "base64")
        )
    assert defang(tmp_path, with_part(entity)).changes == []
    out = defang(tmp_path, with_part(entity), "max_depth = 3\n")
    assert out.final is not None and out.final.kind is VerdictKind.REJECT
    out = defang(tmp_path, with_part(entity), 'max_depth = 3\non_limit = "allow"\n')
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE


# --- attachments outside MIME --------------------------------------------------


def uuencoded(name: bytes, data: bytes) -> bytes:
    lines = b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45))
    return b"begin 644 " + name + b"\n" + lines + b"`\nend\n"


def yencoded(name: bytes, data: bytes) -> bytes:
    out = bytearray()
    for byte in data:
        c = (byte + 42) & 0xFF
        if c in (0x00, 0x0A, 0x0D, 0x3D):
            out += b"=" + bytes([(c + 64) & 0xFF])
        else:
            out.append(c)
    lines = b"\n".join(bytes(out[i : i + 128]) for i in range(0, len(out), 128))
    return (
        b"=ybegin line=128 size="
        + str(len(data)).encode()
        + b" name="
        + name
        + b"\n"
        + lines
        + b"\n=yend size="
        + str(len(data)).encode()
        + b"\n"
    )


_HQX = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"


def binhexed(name: bytes, data: bytes) -> bytes:
    """BinHex 4.0 without run-length coding (0x90 escaped) and zero CRCs."""
    header = (
        bytes([len(name)])
        + name
        + b"\x00"
        + b"APPL"
        + b"????"
        + b"\x00\x00"
        + len(data).to_bytes(4, "big")
        + (0).to_bytes(4, "big")
        + b"\x00\x00"
    )
    stream = (header + data + b"\x00\x00" + b"\x00\x00").replace(b"\x90", b"\x90\x00")
    bits, nbits, out = 0, 0, bytearray()
    for byte in stream:
        bits = (bits << 8) | byte
        nbits += 8
        while nbits >= 6:
            nbits -= 6
            out.append(_HQX[(bits >> nbits) & 63])
    if nbits:
        out.append(_HQX[(bits << (6 - nbits)) & 63])
    lines = b"\n".join(bytes(out[i : i + 64]) for i in range(0, len(out), 64))
    return b"(This file must be converted with BinHex 4.0)\n:" + lines + b":\n"


def text_message(text: bytes, cte: str = "7bit") -> bytes:
    text = text.replace(b"\n", b"\r\n")
    return (
        b"From: a@example.org\r\nSubject: old school\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: "
        + cte.encode()
        + b"\r\n\r\n"
        + _encoded(text, cte)
    )


@pytest.mark.parametrize(
    ("block", "name"),
    [
        (uuencoded(b"tool.exe", b"anything at all"), "tool.exe"),
        (uuencoded(b"notes.txt", PE), "notes.txt"),  # the content is the program
        (b"begin-base64 644 run.scr\n" + base64.encodebytes(b"x" * 10) + b"====\n", "run.scr"),
        (yencoded(b"tool.exe", b"anything"), "tool.exe"),
        (yencoded(b"notes.bin", PE), "notes.bin"),
        (binhexed(b"tool.exe", b"anything"), "tool.exe"),
        (binhexed(b"Notes", PE), "Notes"),
        (b"> " + uuencoded(b"quoted.exe", b"x").replace(b"\n", b"\n> "), "quoted.exe"),
    ],
)
@pytest.mark.parametrize("cte", ["7bit", "quoted-printable", "base64"])
def test_files_outside_mime_in_text_parts(
    tmp_path: Path, block: bytes, name: str, cte: str
) -> None:
    raw = text_message(b"Hi,\n\nthe file:\n\n" + block + b"\nBye.\n", cte)
    out = defang(tmp_path, raw)
    value = removed_or_any(out)
    assert f'removed "{name}"' in value
    # The text around the file is kept; the file is gone; the encoding is the same.
    text = parsed(raw, new_body(out) or b"").get_content()
    assert "Hi," in text and "Bye." in text and "was removed by the mail filter" in text
    assert "begin 644" not in text and "=ybegin" not in text and "BinHex" not in text
    saved = list((tmp_path / "saved").rglob("*.bin"))
    assert saved


def test_harmless_text_that_looks_like_a_block_stays(tmp_path: Path) -> None:
    raw = text_message(
        b"Let us begin the meeting.\nbegin 644 notes.txt\n" + uuencoded(b"notes.txt", b"hello")[19:]
    )
    assert defang(tmp_path, raw).changes == []


def test_mime_binhex_part_is_judged_by_its_inner_name(tmp_path: Path) -> None:
    part = b'Content-Type: application/mac-binhex40; name="doc.hqx"\r\n\r\n' + binhexed(
        b"doc.exe", b"x"
    ).replace(b"\n", b"\r\n")
    assert "doc.exe" in removed_or_any(defang(tmp_path, with_part(part)))


# --- observe mode ---------------------------------------------------------------


def test_observe_mode_saves_nothing(tmp_path: Path) -> None:
    raw = with_part(b'Content-Type: application/octet-stream; name="a.exe"\r\n\r\nxx\r\n')
    cfg = config(tmp_path, 'mode = "observe"\n')
    out = run_message(session(cfg), "a@example.org", ["b@example.com"], raw)
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE
    assert not [m for m in out.changes if isinstance(m, BodyReplacement)]
    assert not (tmp_path / "saved").exists()


# --- the cases through `miltrd replay`, as an administrator runs them --------


def _decodings(data: bytes, depth: int = 4) -> list[bytes]:
    """``data`` and what every base64 run in it decodes to, recursively."""
    out = [data]
    if depth:
        for run in re.findall(rb"(?:^[A-Za-z0-9+/=]{8,}\r?\n)+", data, re.MULTILINE):
            out += _decodings(base64.b64decode(re.sub(rb"\s", b"", run) + b"=="), depth - 1)
    return out


@pytest.mark.parametrize(
    ("case", "name", "inside"),
    [
        ("16-unindented-param-line", "invoice.exe", False),
        ("17-base64-message-rfc822", "setup.exe", True),
    ],
)
def test_cases_through_miltrd_replay(tmp_path: Path, case: str, name: str, inside: bool) -> None:
    from tests.test_cli import miltrd

    cfg = tmp_path / "defang.toml"
    cfg.write_text(config(tmp_path))
    out = tmp_path / "out.eml"
    result = miltrd(
        "replay", str(CASES / f"{case}.eml"), "--from", "a@example.org",
        "--rcpt", "b@example.com", "--client-ip", "192.0.2.10", "-c", str(cfg),
        "--output", str(out),
    )  # fmt: skip
    assert "verdict: accept" in result.stdout, result.stdout + result.stderr
    assert f'X-Miltrd-Defang: removed "{name}"' in result.stdout
    delivered = out.read_bytes()
    layers = _decodings(delivered)
    assert not any(b"MZ\x90" in layer for layer in layers)
    notices = [x for x in layers if b"was removed by the mail filter" in x.replace(b"=\r\n", b"")]
    assert notices and (not inside or any(b"Here is the tool." in x for x in layers))
    # A dry run: nothing is written, what would be saved is said.
    assert not (tmp_path / "saved").exists()
    out = tmp_path / "reject.eml"
    cfg.write_text(config(tmp_path, 'action = "reject"\n'))
    result = miltrd(
        "replay", str(CASES / f"{case}.eml"), "--from", "a@example.org",
        "--rcpt", "b@example.com", "-c", str(cfg),
    )  # fmt: skip
    assert "verdict: reject" in result.stdout and name in result.stdout


# --- more readings ------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b'Content-Type: application/octet-stream name="a.exe"\r\n',  # no ";" before it
        b"Content-Disposition: attachment filename=a.exe\r\n",
        b"Content-Type: application/octet-stream; NAME=a.exe\r\n",  # any case
        b'Content-Type: application/octet-stream; name="a.exe\r\n',  # an unclosed quote
        b"Content-Type : application/octet-stream; name=a.exe\r\n",  # space before the colon
        b"Content-Type: application/octet-stream; name==?utf-8?q?a=2Eexe?=\r\n",
    ],
)
def test_sloppy_parameters_are_read_as_clients_read_them(tmp_path: Path, head: bytes) -> None:
    assert new_body(defang(tmp_path, with_part(head + b"\r\nplain words\r\n"))) is not None, head


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=400),
    cut=st.integers(min_value=0, max_value=2000),
    noise=st.sampled_from(
        [b"", b"--b1\r\n", b"\r\n\r\n", b"begin 644 a\r\n", b"=ybegin name=\r\n", b":"]
    ),
)
def test_any_damage_to_a_message_never_raises(
    tmp_path: Path, data: bytes, cut: int, noise: bytes
) -> None:
    base = _inner_message()
    cut = min(cut, len(base))
    raw = base[:cut] + noise + data + base[cut:]
    out = defang(tmp_path, raw)
    assert out.final is not None
    assert out.final.kind in (VerdictKind.CONTINUE, VerdictKind.REJECT, VerdictKind.TEMPFAIL)


def test_a_message_too_large_to_scan_is_not_let_through(tmp_path: Path) -> None:
    raw = with_part(b"Content-Type: text/plain\r\n\r\n" + b"x" * 3000 + b"\r\n")
    out = defang(tmp_path, raw, "max_message_size = 1000\n")
    assert out.final is not None and out.final.kind is VerdictKind.REJECT
    out = defang(tmp_path, raw, 'max_message_size = 1000\non_limit = "tempfail"\n')
    assert out.final is not None and out.final.kind is VerdictKind.TEMPFAIL
    out = defang(tmp_path, raw, 'max_message_size = 1000\non_limit = "allow"\n')
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE


def test_two_content_types_with_two_boundaries_both_split(tmp_path: Path) -> None:
    raw = (
        b"From: a@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="a"\r\n'
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--a\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b'--b\r\nContent-Type: application/octet-stream; name="x.exe"\r\n\r\nharmless\r\n'
        b"--a--\r\n"
    )
    out = defang(tmp_path, raw)
    assert 'removed "x.exe"' in removed_or_any(out)
    # Each boundary alone is a reading some client takes; either order.
    swapped = raw.replace(b'boundary="a"', b'boundary="X"').replace(
        b'boundary="b"', b'boundary="a"'
    )
    swapped = swapped.replace(b'boundary="X"', b'boundary="b"')
    assert 'removed "x.exe"' in removed_or_any(defang(tmp_path, swapped))


def test_filename_on_content_type_counts(tmp_path: Path) -> None:
    head = b'Content-Type: application/octet-stream; filename="a.exe"\r\n'
    assert new_body(defang(tmp_path, with_part(head + b"\r\nplain words\r\n"))) is not None


# --- archives other than zip --------------------------------------------------


def _tar(members: dict[str, bytes], compression: str = "") -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:" + compression) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _attach(data: bytes, name: str) -> bytes:
    return with_part(
        f'Content-Type: application/octet-stream; name="{name}"\r\n'.encode()
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(data).replace(b"\n", b"\r\n")
    )


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_tar_archives_are_listed(tmp_path: Path, compression: str) -> None:
    bad = _tar({"docs/readme.txt": b"hi", "docs/run.exe": b"x"}, compression)
    out = defang(tmp_path, _attach(bad, "files.dat"))  # the name says nothing
    assert "archive contains run.exe" in removed_or_any(out)
    good = _tar({"docs/readme.txt": b"hi", "photo.jpg": b"\xff\xd8"}, compression)
    assert defang(tmp_path, _attach(good, "files.tar")).changes == []


@pytest.mark.parametrize("module", ["gzip", "bz2", "lzma"])
def test_single_compressed_files_are_judged_by_inner_name_and_content(
    tmp_path: Path, module: str
) -> None:
    import importlib

    compress = importlib.import_module(module).compress
    assert new_body(defang(tmp_path, _attach(compress(b"just text"), "setup.exe.gz")))
    value = removed_or_any(defang(tmp_path, _attach(compress(PE), "photo.dat")))
    assert "Windows executable" in value
    assert defang(tmp_path, _attach(compress(b"just text"), "notes.txt.gz")).changes == []


def test_gzip_header_name_is_judged(tmp_path: Path) -> None:
    import gzip
    import io

    buf = io.BytesIO()
    with gzip.GzipFile(filename="invoice.exe", mode="wb", fileobj=buf) as g:
        g.write(b"just text")
    assert "invoice.exe" in removed_or_any(defang(tmp_path, _attach(buf.getvalue(), "a.gz")))


@pytest.mark.parametrize(
    "magic",
    [
        b"Rar!\x1a\x07\x01\x00",
        b"7z\xbc\xaf\x27\x1c\x00\x04",
        b"\x00" * 7 + b"**ACE**",
        b"\x60\xea\x28\x00",
        b"\x00\x00-lh5-",
    ],
)
def test_archives_that_cannot_be_opened_go_through_on_limit(tmp_path: Path, magic: bytes) -> None:
    data = magic + b"\x00" * 200
    out = defang(tmp_path, _attach(data, "files.bin"))
    assert "content cannot be checked" in removed_or_any(out)
    assert defang(tmp_path, _attach(data, "files.bin"), 'other_archives = "allow"\n').changes == []
    out = defang(tmp_path, _attach(data, "files.bin"), 'on_limit = "tempfail"\n')
    assert out.final is not None and out.final.kind is VerdictKind.TEMPFAIL


def test_headers_as_a_strict_parser_ends_them_are_a_reading_too(tmp_path: Path) -> None:
    # A lenient client reads the encoding after the stray line and sees
    # base64 noise; a strict one ends the headers at the stray line and
    # shows the text with a uuencoded program in it.
    block = uuencoded(b"tool.exe", b"x").replace(b"\n", b"\r\n")
    part = (
        b"Content-Type: text/plain\r\nthis line is no header\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nHello\r\n" + block
    )
    out = defang(tmp_path, with_part(part))
    assert 'removed "tool.exe"' in removed_or_any(out)
    body = new_body(out) or b""
    assert b"begin 644" not in body and b"Hello." in body


def test_what_a_bound_kept_from_being_read_goes_through_on_limit(tmp_path: Path) -> None:
    # A header block past the bound: a name could stand after it.
    long_head = b"X-Filler: " + b"a" * 300_000 + b"\r\n"
    part = long_head + b'Content-Type: application/octet-stream; name="a.exe"\r\n\r\nxx\r\n'
    out = defang(tmp_path, with_part(part))
    assert "header block longer" in removed_or_any(out)
    # A message/partial fragment: the whole it belongs to is never seen here.
    partial = b'Content-Type: message/partial; id="x@y"; number=1; total=2\r\n\r\nFrom: a@b\r\n'
    assert "message/partial" in removed_or_any(defang(tmp_path, with_part(partial)))
    allow = 'on_limit = "allow"\n'
    assert defang(tmp_path, with_part(partial), allow).changes == []


@pytest.mark.parametrize("ctype", ["application/x-uuencode", "text/x-uuencode", "application/uue"])
def test_uuencode_parts_are_looked_into(tmp_path: Path, ctype: str) -> None:
    part = f"Content-Type: {ctype}\r\n\r\n".encode() + uuencoded(b"data.bin", PE).replace(
        b"\n", b"\r\n"
    )
    assert "Windows executable" in removed_or_any(defang(tmp_path, with_part(part)))


def test_a_walk_given_up_on_saves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from miltrd.plugins.defang import Defang

    # A walk that outlasts the hook's timeout, whatever the machine's speed
    # (the walk itself got fast enough to finish within it now and then).
    judge = Defang._judge_tree

    def slow_judge(self, node, findings, problems):
        if node.parent is None:
            time.sleep(0.5)
        return judge(self, node, findings, problems)

    monkeypatch.setattr(Defang, "_judge_tree", slow_judge)
    raw = with_part(b'Content-Type: application/octet-stream; name="a.exe"\r\n\r\nxx\r\n')
    out = defang(tmp_path, raw, "timeout = 0.05\n")
    assert out.final is not None and out.final.kind is VerdictKind.TEMPFAIL
    time.sleep(1.5)  # the worker thread has long noticed
    assert not (tmp_path / "saved").exists()
