"""The defang plugin over a corpus of messages the tests make themselves."""

from __future__ import annotations

import email
import email.policy
import io
import stat
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from miltrd.api import BodyReplacement, HeaderAddition, HeaderChange, Quarantining, VerdictKind
from miltrd.mta import split_message

from .helpers import run_message, session

PE = b"MZ" + b"\x90" * 58 + (64).to_bytes(4, "little") + b"PE\x00\x00" + b"\x00" * 200
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 100
PDF = b"%PDF-1.4\n" + b"x" * 300


def config(tmp: Path, extra: str = "") -> str:
    return f'[chain]\nplugins = ["defang"]\n[plugins.defang]\nsave_dir = "{tmp / "saved"}"\n{extra}'


def mail(*attachments: tuple[bytes, str, str], html: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.com"
    msg["Subject"] = "corpus"
    msg.set_content("Hello,\n\nsee the attachment.\n")
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for data, ctype, name in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=email.policy.SMTP)


def zipped(*members: tuple[str, bytes], encrypt: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members:
            z.writestr(name, data)
    data = buf.getvalue()
    if encrypt:  # set the "encrypted" flag bit in every header
        data = data.replace(b"PK\x03\x04\x14\x00\x00\x00", b"PK\x03\x04\x14\x00\x01\x00")
        data = data.replace(
            b"PK\x01\x02\x14\x03\x14\x00\x00\x00", b"PK\x01\x02\x14\x03\x14\x00\x01\x00"
        )
    return data


def defang(tmp: Path, raw: bytes, extra: str = ""):
    return run_message(session(config(tmp, extra)), "a@example.org", ["b@example.com"], raw)


def new_body(out) -> bytes | None:
    pieces = [m.read() for m in out.changes if isinstance(m, BodyReplacement)]
    return b"".join(pieces) if pieces else None


def parts_of(body: bytes, raw: bytes):
    headers, _ = split_message(raw)
    head = "".join(f"{n}: {v}\r\n" for n, v in headers).encode()
    return email.message_from_bytes(head + b"\r\n" + body, policy=email.policy.default)


def test_clean_message_is_not_touched(tmp_path: Path) -> None:
    out = defang(tmp_path, mail((PDF, "application/pdf", "report.pdf")))
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE
    assert out.changes == []
    assert not (tmp_path / "saved").exists()


def test_banned_attachment_is_replaced_and_the_rest_kept_byte_for_byte(tmp_path: Path) -> None:
    raw = mail(
        (PDF, "application/pdf", "report.pdf"), (PE, "application/octet-stream", "setup.exe")
    )
    out = defang(tmp_path, raw)
    body = new_body(out)
    assert body is not None
    _, original = split_message(raw)
    # Everything before the banned part and after it is unchanged.
    exe_at = original.index(b'filename="setup.exe"')
    part_start = original.rindex(b"\r\n--", 0, exe_at) + 2
    part_start = original.index(b"\r\n", part_start) + 2
    assert body[:part_start] == original[:part_start]
    tail = original[original.index(b"\r\n--", exe_at) :]
    assert body.endswith(tail)
    parsed = parts_of(body, raw)
    kinds = [p.get_content_type() for p in parsed.iter_parts()]
    assert kinds == ["text/plain", "application/pdf", "text/plain"]
    notice = list(parsed.iter_parts())[2].get_content()
    assert (
        'The attachment "setup.exe" was removed by the mail filter: file type .exe is not allowed.'
        in notice
    )
    (header,) = [m for m in out.changes if isinstance(m, HeaderAddition)]
    assert header.name == "X-Miltrd-Defang"
    assert header.value == 'removed "setup.exe" (file type .exe is not allowed)'
    (day,) = list((tmp_path / "saved").iterdir())
    assert stat.S_IMODE(day.stat().st_mode) == 0o700
    saved = [p for p in day.iterdir() if p.suffix == ".bin"]
    assert len(saved) == 1 and saved[0].read_bytes() == PE
    assert stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    assert saved[0].name in notice  # the notice tells the admins' reference


@pytest.mark.parametrize(
    "name",
    [
        "invoice.pdf.exe",
        "INVOICE.PDF.EXE",
        "report.exe.",
        "report.exe . .",
        "evil\u202efdp.exe",
        "naïve.vbs",
        "../../../etc/cron.d/evil.scr",
        "C:\\Users\\x\\run.bat",
    ],
)
def test_file_name_tricks(tmp_path: Path, name: str) -> None:
    out = defang(tmp_path, mail((b"harmless bytes", "application/octet-stream", name)))
    assert new_body(out) is not None, name
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all((tmp_path / "saved") in p.parents for p in files)


def test_rfc2231_and_encoded_word_names(tmp_path: Path) -> None:
    for disposition in (
        "attachment; filename*=utf-8''na%C3%AFve%2Eexe",
        'attachment; filename="=?utf-8?b?' + "c2V0dXAuZXhl" + '?="',
    ):
        raw = (
            b"From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
            b"--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
            b"--B\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: " + disposition.encode() + b"\r\n\r\nxx\r\n--B--\r\n"
        )
        out = defang(tmp_path, raw)
        assert new_body(out) is not None, disposition


def test_banned_mime_type_and_sniffed_executables(tmp_path: Path) -> None:
    assert new_body(defang(tmp_path, mail((b"x", "application/x-msdownload", "notes.txt"))))
    out = defang(tmp_path, mail((PE, "image/jpeg", "holiday.jpg")))
    (header,) = [m for m in out.changes if isinstance(m, HeaderAddition)]
    assert "Windows executable" in header.value
    assert new_body(defang(tmp_path, mail((ELF, "application/octet-stream", "data.bin"))))
    assert defang(tmp_path, mail((b"MZ is a postcode", "text/plain", "a.txt"))).changes == []


def test_zip_archives(tmp_path: Path) -> None:
    bad = zipped(("docs/readme.txt", b"hi"), ("setup.exe", PE))
    out = defang(tmp_path, mail((bad, "application/zip", "files.zip")))
    (header,) = [m for m in out.changes if isinstance(m, HeaderAddition)]
    assert "zip archive contains setup.exe" in header.value
    good = zipped(("readme.txt", b"hi"), ("photo.jpg", b"\xff\xd8"))
    assert defang(tmp_path, mail((good, "application/zip", "files.zip"))).changes == []
    nested = zipped(("inner.zip", zipped(("deep/run.js", b"x"))))
    assert new_body(defang(tmp_path, mail((nested, "application/octet-stream", "x.zip"))))
    too_deep = zipped(
        (
            "a.zip",
            zipped(
                ("b.zip", zipped(("c.txt", b"x"))),
            ),
        ),
    )
    assert new_body(defang(tmp_path, mail((too_deep, "application/zip", "x.zip"))))


def test_zip_policies_encrypted_corrupt_and_member_count(tmp_path: Path) -> None:
    encrypted = zipped(("secret.txt", b"x"), encrypt=True)
    # Its content cannot be looked into: on_limit ("ban") decides by default.
    out = defang(tmp_path, mail((encrypted, "application/zip", "e.zip")))
    (header,) = [m for m in out.changes if isinstance(m, HeaderAddition)]
    assert "encrypted zip archive" in header.value
    allow = 'encrypted_zip = "allow"\n'
    assert defang(tmp_path, mail((encrypted, "application/zip", "e.zip")), allow).changes == []
    # Its member names are still judged when it is let through.
    bad = zipped(("run.exe", b"x"), encrypt=True)
    assert new_body(defang(tmp_path, mail((bad, "application/zip", "e.zip")), allow))
    out = defang(tmp_path, mail((encrypted, "application/zip", "e.zip")), 'on_limit = "tempfail"\n')
    assert out.final is not None and out.final.kind is VerdictKind.TEMPFAIL
    corrupt = b"PK\x03\x04" + b"garbage" * 20
    assert new_body(defang(tmp_path, mail((corrupt, "application/zip", "c.zip"))))
    many = zipped(*((f"f{i}.txt", b"") for i in range(3000)))
    out = defang(tmp_path, mail((many, "application/zip", "m.zip")))
    (header,) = [m for m in out.changes if isinstance(m, HeaderAddition)]
    assert "more than 1000 members" in header.value


def test_attached_message_with_an_executable(tmp_path: Path) -> None:
    inner = mail((PE, "application/octet-stream", "inner.exe"))
    outer = EmailMessage()
    outer["From"], outer["Subject"] = "a@example.org", "fwd"
    outer.set_content("forwarded\n")
    outer.add_attachment(email.message_from_bytes(inner, policy=email.policy.default))
    raw = outer.as_bytes(policy=email.policy.SMTP)
    out = defang(tmp_path, raw)
    body = new_body(out)
    assert body is not None and b"inner.exe" in body and PE[:10] not in body
    parsed = parts_of(body, raw)
    assert [p.get_content_type() for p in parsed.walk()][:3] == [
        "multipart/mixed",
        "text/plain",
        "message/rfc822",
    ]


def test_whole_message_is_an_executable(tmp_path: Path) -> None:
    raw = (
        b"From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: application/x-msdownload; name="a.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n"
    )
    out = defang(tmp_path, raw)
    assert HeaderChange(1, "Content-Type", "text/plain; charset=utf-8") in out.changes
    assert b"removed by the mail filter" in (new_body(out) or b"").replace(b"=\r\n", b"")


def test_html_scripts_are_removed_when_asked(tmp_path: Path) -> None:
    html = (
        '<html><body onload="steal()"><p>Hi <a href="javascript:evil()">there</a>'
        '<script>alert(1)</script><b onclick="x()">bold</b> &amp; more</p></body></html>\n'
    )
    raw = mail(html=html)
    assert defang(tmp_path, raw).changes == []  # off by default
    out = defang(tmp_path, raw, "clean_html = true\n")
    parsed = parts_of(new_body(out) or b"", raw)
    cleaned = next(p for p in parsed.walk() if p.get_content_type() == "text/html").get_content()
    assert "script" not in cleaned and "alert" not in cleaned
    assert "onload" not in cleaned and "onclick" not in cleaned and "javascript" not in cleaned
    assert "<b>bold</b> &amp; more" in cleaned and ">there</a>" in cleaned
    plain = next(p for p in parsed.walk() if p.get_content_type() == "text/plain").get_content()
    assert plain.replace("\r\n", "\n") == "Hello,\n\nsee the attachment.\n"


def test_malformed_mime_never_raises(tmp_path: Path) -> None:
    cases = [
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nno end',
        b"Content-Type: multipart/mixed\r\n\r\nno boundary at all",
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\nnothing here',
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not*base64",
        b'Content-Type: text/plain; charset="\xff\xfe"\r\n\r\n\x00\x01\x02',
    ]
    for case in cases:
        raw = b"From: a@example.org\r\nSubject: m\r\n" + case
        out = defang(tmp_path, raw)
        assert out.final is not None and out.final.kind is VerdictKind.CONTINUE
        assert new_body(out) is None
    strict = defang(tmp_path, b"From: a@x\r\n" + cases[0], 'on_malformed = "tempfail"\n')
    assert strict.final is not None and strict.final.kind is VerdictKind.TEMPFAIL


def test_limits_on_nesting_and_part_count(tmp_path: Path) -> None:
    deep = b"text\r\n"
    for level in range(40):
        b = f"L{level}".encode()
        deep = (
            b'Content-Type: multipart/mixed; boundary="'
            + b
            + b'"\r\n\r\n--'
            + b
            + b"\r\n"
            + deep
            + b"\r\n--"
            + b
            + b"--\r\n"
        )
    out = defang(tmp_path, b"From: a@x\r\n" + deep)
    assert out.final is not None and out.final.kind is VerdictKind.REJECT
    assert "nesting deeper than 10" in out.final.reply.lines[0]
    many = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(3000))
    raw = b'From: a@x\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n' + many + b"--B--\r\n"
    out = defang(tmp_path, raw)
    assert out.final is not None and out.final.kind is VerdictKind.REJECT


def test_reject_and_quarantine_actions(tmp_path: Path) -> None:
    raw = mail((PE, "application/octet-stream", "invoice.pdf.exe"))
    out = defang(tmp_path, raw, 'action = "reject"\n')
    assert out.final is not None and out.final.kind is VerdictKind.REJECT
    assert out.final.reply is not None
    assert (out.final.reply.code, out.final.reply.xcode) == (550, "5.7.1")
    assert out.final.reply.lines == (
        'Attachment "invoice.pdf.exe" refused: file type .exe is not allowed',
    )
    out = defang(tmp_path, raw, 'action = "quarantine"\n')
    assert out.final is not None and out.final.kind is VerdictKind.CONTINUE
    assert any(isinstance(m, Quarantining) for m in out.changes)
    assert new_body(out) is None


def test_save_failure_tempfails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = f'[chain]\nplugins = ["defang"]\n[plugins.defang]\nsave_dir = "{blocker}/sub"\n'
    out = run_message(session(cfg), "a@x", ["b@y"], mail((PE, "application/octet-stream", "a.exe")))
    assert out.final is not None and out.final.kind is VerdictKind.TEMPFAIL
