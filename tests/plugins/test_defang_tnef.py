"""defang looks inside TNEF (winmail.dat): Outlook shows the files in it as
attachments, so they are judged like MIME attachments (issue 15).

The streams are made here by ``tnef`` ([MS-OXTNEF]); tnefparse, an
independent reader, is shown to read them the same way as
miltrd.plugins._tnef does."""

from __future__ import annotations

import base64
import io
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tnefparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from miltrd.plugins._decode import BytesSource
from miltrd.plugins._tnef import TnefError, read_tnef

from miltrd.api import HeaderAddition, VerdictKind

from .test_defang import PE, defang, new_body

SIG = b"\x78\x9f\x3e\x22"
IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")


def attribute(level: int, ident: int, atype: int, data: bytes) -> bytes:
    return (
        bytes([level])
        + struct.pack("<III", (atype << 16) | ident, len(data), 0)[:8]
        + data
        + struct.pack("<H", sum(data) & 0xFFFF)
    )


def prop(ptype: int, pid: int, value: bytes) -> bytes:
    head = struct.pack("<HH", ptype, pid)
    if ptype in (0x1E, 0x1F, 0x102, 0x0D):
        pad = b"\x00" * (-len(value) % 4)
        return head + struct.pack("<II", 1, len(value)) + value + pad
    return head + value


def unicode(text: str) -> bytes:
    return (text + "\x00").encode("utf-16-le")


@dataclass
class Att:
    title: str | None = None
    data: bytes = b""
    long_name: str | None = None
    short_name: bytes | None = None  # PR_ATTACH_FILENAME as PT_STRING8
    mime_tag: str | None = None
    message: bytes | None = None  # an attached message: its TNEF stream
    extra: list[bytes] = field(default_factory=list)


def tnef(*atts: Att) -> bytes:
    out = SIG + struct.pack("<H", 0x1234)
    out += attribute(1, 0x9006, 0x0008, struct.pack("<I", 0x10000))  # attTnefVersion
    out += attribute(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0))  # attOemCodepage
    out += attribute(1, 0x8008, 0x0007, b"IPM.Microsoft Mail.Note\x00")  # attMessageClass
    for a in atts:
        out += attribute(2, 0x9002, 0x0006, struct.pack("<HIIIHI", 1, 0xFFFFFFFF, 0, 0, 1, 0)[:14])
        if a.title is not None:
            out += attribute(2, 0x8010, 0x0001, a.title.encode("latin-1") + b"\x00")
        if a.data:
            out += attribute(2, 0x800F, 0x0006, a.data)
        props = list(a.extra)
        props.append(prop(0x0003, 0x3705, struct.pack("<I", 5 if a.message else 1)))
        if a.long_name is not None:
            props.append(prop(0x001F, 0x3707, unicode(a.long_name)))
        if a.short_name is not None:
            props.append(prop(0x001E, 0x3704, a.short_name + b"\x00"))
        if a.mime_tag is not None:
            props.append(prop(0x001E, 0x370E, a.mime_tag.encode() + b"\x00"))
        if a.message is not None:
            props.append(prop(0x000D, 0x3701, IID_IMESSAGE + a.message))
        mapi = struct.pack("<I", len(props)) + b"".join(props)
        out += attribute(2, 0x9005, 0x0006, mapi)
    return out


def winmail(stream: bytes, name: str = "winmail.dat", ctype: str = "application/ms-tnef") -> bytes:
    return (
        b"From: a@example.org\r\nTo: b@example.com\r\nSubject: rich\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b"--b1\r\nContent-Type: " + ctype.encode() + b'; name="' + name.encode() + b'"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(stream).replace(b"\n", b"\r\n")
        + b"--b1--\r\n"
    )  # fmt: skip


def summary(out) -> str:
    (header,) = [m for m in out.changes if isinstance(m, HeaderAddition)]
    return header.value.replace("\n", "")


def zipped(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, data)
    return buf.getvalue()


BANNED = {
    "by its title": Att("setup.exe", b"anything"),
    "by its content": Att("report.pdf", PE),
    "by the long name beside a harmless 8.3 title": Att("REPORT~1.PDF", b"x", "report.pdf.exe"),
    "by PR_ATTACH_FILENAME": Att(None, b"x", short_name=b"RUN.SCR"),
    "by a NUL in the long name": Att("photo.jpg", b"x", "photo.exe\x00.jpg"),
    "by its MIME tag": Att("data.bin", b"x", mime_tag="application/x-msdownload"),
    "in a zip inside": Att("files.zip", zipped("docs/run.exe", b"x")),
    "in an attached message": Att(
        "Fwd: hi", message=tnef(Att("notes.txt", b"hi"), Att("tool.exe", b"x"))
    ),
    "in a winmail.dat inside": Att("winmail.dat", tnef(Att("inner.exe", b"x"))),
}


@pytest.mark.parametrize("att", BANNED.values(), ids=BANNED.keys())
def test_a_banned_file_inside_tnef_is_removed(tmp_path: Path, att: Att) -> None:
    stream = tnef(Att("notes.txt", b"hello"), att)
    out = defang(tmp_path, winmail(stream))
    body = new_body(out)
    assert body is not None, "the file inside TNEF was delivered"
    assert base64.encodebytes(stream)[:60] not in body.replace(b"\r\n", b"\n")
    assert "winmail.dat" in summary(out) and "TNEF" in summary(out)
    assert b"See attached." in body
    out = defang(tmp_path, winmail(stream), 'action = "reject"\n')
    assert out.final is not None and out.final.kind is VerdictKind.REJECT


def test_tnef_is_told_by_its_content_whatever_it_is_called(tmp_path: Path) -> None:
    stream = tnef(Att("setup.exe", b"anything"))
    out = defang(tmp_path, winmail(stream, "data.bin", "application/octet-stream"))
    assert "setup.exe" in summary(out)


def test_harmless_tnef_is_delivered_as_it_came(tmp_path: Path) -> None:
    stream = tnef(
        Att("notes.txt", b"hello"),
        Att("PHOTO~1.JPG", b"\xff\xd8\xff", "photo of the team.jpg", mime_tag="image/jpeg"),
        Att("Fwd: hi", message=tnef(Att("minutes.docx", b"PK-ish"))),
    )
    out = defang(tmp_path, winmail(stream), 'on_limit = "ban"\non_malformed = "ban"\n')
    assert out.changes == []
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE


@pytest.mark.parametrize(
    ("on_limit", "kind"),
    [("ban", None), ("tempfail", VerdictKind.TEMPFAIL), ("allow", VerdictKind.CONTINUE)],
)
def test_tnef_that_cannot_be_read_goes_through_on_limit(
    tmp_path: Path, on_limit: str, kind: VerdictKind | None
) -> None:
    whole = tnef(Att("notes.txt", b"hello"), Att("photo.jpg", b"\xff\xd8" * 500))
    cut = whole[: len(whole) - 300]  # inside the photo's data
    out = defang(tmp_path, winmail(cut), f'on_limit = "{on_limit}"\n')
    if kind is None:
        assert "cannot be read" in summary(out)
        assert new_body(out) is not None
    else:
        assert out.final is not None and out.final.kind is kind
        assert out.changes == []


def test_a_name_read_before_the_stream_breaks_still_counts(tmp_path: Path) -> None:
    whole = tnef(Att("setup.exe", b"x" * 1000))
    out = defang(tmp_path, winmail(whole[:-500]), 'on_limit = "allow"\n')
    assert "setup.exe" in summary(out)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=6, max_value=400))
def test_a_cut_stream_never_delivers_the_file(tmp_path: Path, cut: int) -> None:
    whole = tnef(Att("notes.txt", b"hello"), Att("setup.exe", PE))
    stream = whole[: min(cut, len(whole))]
    body = new_body(defang(tmp_path, winmail(stream)))
    if body is None:  # delivered as it came: then the file was never in it
        assert b"setup.exe" not in stream and PE[:64] not in stream


def test_not_tnef_at_all() -> None:
    with pytest.raises(TnefError):
        read_tnef(BytesSource(b"PK\x03\x04 not tnef"))


CROSS = [
    tnef(Att("notes.txt", b"hello"), Att("REPORT~1.PDF", b"%PDF-1.4", "Quarterly report.pdf")),
    tnef(Att("a.bin", bytes(range(256)) * 3), Att(None, b"x", short_name=b"RUN.SCR")),
    tnef(
        Att(
            "odd size.txt", b"12345", mime_tag="text/plain", extra=[prop(0x0B, 0x7FFE, b"\1\0\0\0")]
        )
    ),
]


@pytest.mark.parametrize("stream", CROSS)
def test_tnefparse_reads_the_streams_the_same(stream: bytes) -> None:
    theirs = tnefparse.TNEF(stream)  # checks the checksums too
    ours = read_tnef(BytesSource(stream))
    assert len(theirs.attachments) == len(ours)
    for a, f in zip(theirs.attachments, ours, strict=True):
        assert a.data == stream[f.start : f.end]
        names = {n for n in (a.name, a.long_filename()) if n}
        names = {n.decode("latin-1") if isinstance(n, bytes) else n for n in names}
        assert {n.rstrip("\x00") for n in names} <= set(f.names)
