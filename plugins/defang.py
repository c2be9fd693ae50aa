"""defang: remove banned attachments, and optionally scripts from HTML.

At end of message the MIME tree is walked (nested multiparts,
message/rfc822 parts, zip archives listed from their central directory)
and each part is judged by its file name's extension (after undoing RFC
2231 and encoded-word encodings, trailing dots and spaces, bidi tricks),
its declared MIME type, and its content (executable magic: PE "MZ", ELF).

Actions: ``replace`` puts a short text/plain notice in place of each
banned part and keeps every other part's bytes exactly as they were;
``reject`` refuses the message with 5.7.1 naming the file; ``quarantine``
asks the MTA to hold it. A header records what was done. What was removed
is saved first under ``save_dir`` with a name the plugin makes itself;
if it cannot be saved the message is tempfailed. A message with nothing to
remove is left exactly as it was.
"""

from __future__ import annotations

import base64
import email.policy
import io
import itertools
import os
import quopri
import re
import secrets
import time
import unicodedata
import zipfile
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

from miltrd.api import (
    CONTINUE,
    Action,
    Message,
    OptionError,
    Phase,
    Plugin,
    Verdict,
    reject,
    run_blocking,
    tempfail,
)

from ._mimewalk import Limits, Part, decode_payload, parse_tree

DEFAULT_EXTENSIONS = [
    "ade", "adp", "app", "application", "appref-ms", "appx", "appxbundle", "bas", "bat",
    "cab", "chm", "cmd", "com", "cpl", "diagcab", "dll", "exe", "gadget", "hlp", "hta",
    "img", "inf", "ins", "iso", "isp", "jar", "jnlp", "js", "jse", "library-ms", "lnk",
    "msc", "msh", "msi", "msix", "msp", "mst", "ocx", "pif", "ps1", "ps1xml", "ps2",
    "psc1", "psd1", "psm1", "reg", "scf", "scr", "sct", "settingcontent-ms", "shb", "shs",
    "sys", "url", "vb", "vbe", "vbs", "vhd", "vhdx", "ws", "wsc", "wsf", "wsh", "xll",
]  # fmt: skip
DEFAULT_TYPES = [
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/x-dosexec",
    "application/x-executable",
    "application/vnd.microsoft.portable-executable",
    "application/x-ms-installer",
    "application/hta",
]
_BIDI = dict.fromkeys(
    map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)
_counter = itertools.count()
_HEADER_PARSER = BytesHeaderParser(policy=email.policy.default)

Policy = Literal["ban", "allow", "tempfail"]


@dataclass(frozen=True)
class DefangOptions:
    action: Literal["replace", "reject", "quarantine"] = "replace"
    extensions: list[str] = field(default_factory=lambda: list(DEFAULT_EXTENSIONS))
    extra_extensions: list[str] = field(default_factory=list)
    mime_types: list[str] = field(default_factory=lambda: list(DEFAULT_TYPES))
    sniff_executables: bool = True
    scan_zip: bool = True
    zip_depth: int = 2
    max_zip_members: int = 1000
    encrypted_zip: Policy = "allow"
    corrupt_zip: Policy = "ban"
    max_depth: int = 10
    max_parts: int = 500
    max_decoded_size: int = 50 * 1024 * 1024
    max_message_size: int = 100 * 1024 * 1024
    on_limit: Policy = "ban"
    on_malformed: Policy = "allow"
    clean_html: bool = False
    save: Literal["attachments", "message", "none"] = "attachments"
    save_dir: str = "/var/spool/miltrd/quarantine"
    header: str = "X-Miltrd-Defang"


@dataclass
class Finding:
    part: Part
    name: str  # the file name as decoded, for people
    why: str


def clean_filename(name: str) -> str:
    """What Windows would see: bidi controls, trailing dots and spaces gone."""
    name = unicodedata.normalize("NFC", name).translate(_BIDI)
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c for c in name if c.isprintable())
    return name.rstrip(". \t")


def extension_of(name: str) -> str:
    name = clean_filename(name).lower()
    return name.rsplit(".", 1)[1] if "." in name else ""


def is_executable(data: bytes) -> str | None:
    if data[:4] == b"\x7fELF":
        return "ELF executable"
    if data[:2] == b"MZ" and len(data) >= 64:
        offset = int.from_bytes(data[60:64], "little")
        if data[offset : offset + 4] == b"PE\x00\x00" or offset >= len(data):
            return "Windows executable (MZ/PE)"
    return None


def _shown(name: str) -> str:
    """A file name safe to put in a notice, a header or a reply line."""
    text = "".join(c if c.isprintable() else "?" for c in clean_filename(name) or name)
    return text[:120] or "(unnamed)"


class Defang(Plugin):
    Options = DefangOptions
    actions = Action.REPLACE_BODY | Action.ADD_HEADERS | Action.CHANGE_HEADERS | Action.QUARANTINE
    needs = Phase.HEADER | Phase.BODY

    def __init__(self, options: DefangOptions, **kw: Any) -> None:
        super().__init__(options, **kw)
        self.banned_ext = {
            e.lower().lstrip(".") for e in options.extensions + options.extra_extensions
        }
        self.banned_types = {t.lower() for t in options.mime_types}
        if not os.path.isabs(options.save_dir):
            raise OptionError("save_dir", "must be an absolute path")
        if not re.fullmatch(r"[!-9;-~]+", options.header):
            raise OptionError("header", "not a header field name")
        self.limits = Limits(options.max_depth, options.max_parts)

    # --- judging ------------------------------------------------------------

    def _judge_name(self, name: str) -> str | None:
        ext = extension_of(name)
        if ext in self.banned_ext:
            return f"file type .{ext} is not allowed"
        return None

    def _judge_zip(self, data: bytes, depth: int) -> tuple[str | None, str | None]:
        """(why banned, why a limit or policy applies) for a zip archive."""
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
            return self._policy(self.options.corrupt_zip, f"corrupt zip archive ({exc})")
        if len(members) > self.options.max_zip_members:
            return self._policy(
                self.options.on_limit,
                f"zip archive with more than {self.options.max_zip_members} members",
            )
        for info in members:
            why = self._judge_name(info.filename)
            if why:
                return f"zip archive contains {_shown(info.filename)}: {why}", None
            if info.flag_bits & 0x1:
                banned, problem = self._policy(self.options.encrypted_zip, "encrypted zip archive")
                if banned or problem:
                    return banned, problem
                continue
            if extension_of(info.filename) == "zip":
                if depth >= self.options.zip_depth:
                    return self._policy(self.options.on_limit, "zip archives nested too deep")
                if info.file_size > self.options.max_decoded_size:
                    return self._policy(self.options.on_limit, "nested zip archive too large")
                try:
                    inner = archive.read(info)
                except Exception as exc:
                    return self._policy(self.options.corrupt_zip, f"corrupt zip archive ({exc!r})")
                banned, problem = self._judge_zip(inner, depth + 1)
                if banned or problem:
                    return banned, problem
        return None, None

    @staticmethod
    def _policy(policy: Policy, what: str) -> tuple[str | None, str | None]:
        if policy == "ban":
            return what, None
        if policy == "tempfail":
            return None, what
        return None, None

    def judge(self, part: Part, data: bytes) -> tuple[Finding | None, str | None]:
        """A finding for a banned leaf, and/or a problem that tempfails."""
        name = ""
        try:
            name = part.headers.get_filename() or ""
        except Exception:
            part.defects.append("unreadable file name")
        ctype = part.content_type
        why = self._judge_name(name) if name else None
        if why is None and ctype in self.banned_types:
            why = f"type {ctype} is not allowed"
        problem = None
        if why is None and (self.options.sniff_executables or self.options.scan_zip):
            payload, trouble = decode_payload(data, part, self.options.max_decoded_size)
            if trouble:
                if "size" in trouble:
                    banned, problem = self._policy(self.options.on_limit, trouble)
                else:
                    banned, problem = self._policy(self.options.on_malformed, trouble)
                why = banned
            if why is None and self.options.sniff_executables:
                kind = is_executable(payload)
                if kind:
                    why = f"{kind} content is not allowed"
            is_zip = payload[:4] == b"PK\x03\x04" or extension_of(name) == "zip"
            if why is None and self.options.scan_zip and is_zip:
                why, problem = self._judge_zip(payload, 1)
        if why:
            return Finding(part, name or f"(unnamed {ctype} part)", why), problem
        return None, problem

    # --- the hook -------------------------------------------------------------

    async def on_eom(self, msg: Message) -> Verdict | None:
        if msg.body.size > self.options.max_message_size:
            banned, problem = self._policy(self.options.on_limit, "message too large to scan")
            if problem:
                return tempfail("Message too large to scan now", code=451, xcode="4.3.0")
            if banned and self.options.action != "replace":
                return self._refuse(msg, [], banned)
            return None
        body = msg.body.read()
        headers = _HEADER_PARSER.parsebytes(_header_bytes(msg))
        root, limit_problems = parse_tree(headers, body, self.limits)
        findings: list[Finding] = []
        problems: list[str] = []
        for problem in limit_problems:
            banned, trouble = self._policy(self.options.on_limit, problem)
            if banned:
                return self._refuse(msg, [], banned)
            if trouble:
                problems.append(trouble)
        for node in root.walk():
            if node.children and node.defects:  # a broken container: judge the message
                banned, trouble = self._policy(self.options.on_malformed, "; ".join(node.defects))
                if banned:
                    return self._refuse(msg, [], f"malformed MIME ({banned})")
                if trouble:
                    problems.append(trouble)
        for leaf in root.leaves():
            if leaf.defects:
                banned, trouble = self._policy(self.options.on_malformed, "; ".join(leaf.defects))
                if banned:
                    findings.append(Finding(leaf, "(malformed part)", banned))
                    continue
                if trouble:
                    problems.append(trouble)
            finding, trouble = self.judge(leaf, body)
            if finding:
                findings.append(finding)
            elif trouble:
                problems.append(trouble)
        if problems and not findings:
            self.log.warning("%s: tempfail", "; ".join(problems))
            return tempfail(
                "Message could not be checked, try again later", code=451, xcode="4.3.0"
            )
        cleaned = self._clean_html(root, body) if self.options.clean_html else []
        if not findings and not cleaned:
            return None
        for f in findings:
            self.log.warning("%s: %s", _shown(f.name), f.why)
        try:
            saved = await run_blocking(self._save, msg, body, findings)
        except OSError as exc:
            self.log.error("cannot save what was removed: %s: tempfail", exc)
            return tempfail(
                "Message could not be processed, try again later", code=451, xcode="4.3.0"
            )
        if findings and self.options.action == "reject":
            return self._refuse(msg, findings, "")
        if findings and self.options.action == "quarantine":
            msg.quarantine("defang: " + "; ".join(f"{_shown(f.name)}: {f.why}" for f in findings))
            msg.add_header(self.options.header, self._summary(findings, "held in quarantine"))
            return None
        self._replace(msg, root, body, findings, saved, cleaned)
        return None

    def _refuse(self, msg: Message, findings: list[Finding], why: str) -> Verdict:
        if self.options.action == "quarantine":
            msg.quarantine(f"defang: {why or findings[0].why}")
            return CONTINUE
        if findings:
            first = findings[0]
            text = f'Attachment "{_shown(first.name)}" refused: {first.why}'
        else:
            text = f"Message refused: {why}"
        return reject(text, code=550, xcode="5.7.1", reason="defang")

    @staticmethod
    def _summary(findings: list[Finding], done: str) -> str:
        return "; ".join(f'{done} "{_shown(f.name)}" ({f.why})' for f in findings)

    # --- saving ---------------------------------------------------------------

    def _save(self, msg: Message, body: bytes, findings: list[Finding]) -> dict[int, str]:
        if self.options.save == "none" or not findings:
            return {}
        # Under miltrd replay (dry run) nothing is written: the names are
        # made as usual and recorded as what would have been saved.
        dry_run = msg.conn.dry_run
        day = Path(self.options.save_dir) / time.strftime("%Y-%m-%d")
        if not dry_run:
            day.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(day, 0o700)
        base = re.sub(r"[^A-Za-z0-9]", "", msg.queue_id) or secrets.token_hex(6)
        stamp = time.strftime("%H%M%S")
        saved: dict[int, str] = {}

        def write(path: Path, data: bytes) -> None:
            if not dry_run:
                _write_private(path, data)

        if self.options.save == "message":
            name = f"{stamp}-{base}-{next(_counter)}.eml"
            write(day / name, _header_bytes(msg) + b"\r\n" + body)
            msg.record("saved", str(day / name))
            for f in findings:
                saved[id(f.part)] = name
            return saved
        for f in findings:
            name = f"{stamp}-{base}-{next(_counter)}.bin"
            payload, _ = decode_payload(body, f.part, self.options.max_decoded_size)
            write(day / name, payload)
            info = f"original name: {_shown(f.name)}\nreason: {f.why}\nqueue id: {msg.queue_id}\n"
            write(day / (name + ".info"), info.encode())
            msg.record("saved", str(day / name))
            saved[id(f.part)] = name
        return saved

    # --- rewriting --------------------------------------------------------------

    def _notice(self, f: Finding, saved: str | None) -> bytes:
        text = f'The attachment "{_shown(f.name)}" was removed by the mail filter: {f.why}.\n' + (
            f"The administrators kept a copy ({saved}).\n" if saved else ""
        )
        encoded = quopri.encodestring(text.replace("\n", "\r\n").encode("utf-8"))
        return (
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n"
            b"Content-Disposition: inline\r\n"
            b"\r\n" + encoded
        )

    def _replace(
        self,
        msg: Message,
        root: Part,
        body: bytes,
        findings: list[Finding],
        saved: dict[int, str],
        cleaned: list[tuple[Part, bytes]],
    ) -> None:
        edits = [
            (f.part.start, f.part.end, self._notice(f, saved.get(id(f.part)))) for f in findings
        ]
        edits += [(p.content_start, p.end, new) for p, new in cleaned]
        if any(f.part is root for f in findings):
            # The whole message is the banned part: new top-level headers too.
            notice = self._notice(findings[0], saved.get(id(root)))
            _head, _, text = notice.partition(b"\r\n\r\n")
            msg.change_header("Content-Type", "text/plain; charset=utf-8")
            msg.change_header("Content-Transfer-Encoding", "quoted-printable")
            if msg.header("Content-Disposition") is not None:
                msg.delete_header("Content-Disposition")
            new_body = text
        else:
            new_body = _splice(body, edits)
        msg.replace_body(new_body)
        what = []
        if findings:
            what.append(self._summary(findings, "removed"))
        if cleaned:
            what.append(f"scripts removed from {len(cleaned)} HTML part(s)")
        msg.add_header(self.options.header, "; ".join(what))

    def _clean_html(self, root: Part, body: bytes) -> list[tuple[Part, bytes]]:
        out = []
        for leaf in root.leaves():
            if leaf.content_type != "text/html":
                continue
            cte = str(leaf.headers.get("content-transfer-encoding", "7bit")).strip().lower()
            payload, trouble = decode_payload(body, leaf, self.options.max_decoded_size)
            if trouble:
                continue
            charset = leaf.headers.get_content_charset() or "utf-8"
            try:
                text = payload.decode(charset, "surrogateescape")
            except LookupError:
                charset = "utf-8"
                text = payload.decode(charset, "surrogateescape")
            cleaner = _ScriptStripper()
            cleaner.feed(text)
            cleaner.close()
            if not cleaner.changed:
                continue
            data = cleaner.result().encode(charset, "surrogateescape")
            if cte == "base64":
                encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
            elif cte == "quoted-printable":
                encoded = quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
            else:
                encoded = data
            out.append((leaf, encoded))
        return out


def _header_bytes(msg: Message) -> bytes:
    lines = [f"{n}: {v}".replace("\r\n", "\n").replace("\n", "\r\n") for n, v in msg.headers]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


def _splice(body: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = []
    pos = 0
    for start, end, new in sorted(edits):
        if start < pos:
            continue  # inside a part already replaced
        out += [body[pos:start], new]
        pos = end
    out.append(body[pos:])
    return b"".join(out)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class _ScriptStripper(HTMLParser):
    """Rebuilds HTML without <script> elements, on* attributes and
    javascript: URLs; everything else is kept as written."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.parts: list[str] = []
        self.skip = 0
        self.changed = False

    def result(self) -> str:
        return "".join(self.parts)

    def _emit(self, text: str) -> None:
        if not self.skip:
            self.parts.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, self.get_starttag_text() or "", closing=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, self.get_starttag_text() or "", closing=True)

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], raw: str, closing: bool) -> None:
        if tag == "script":
            self.changed = True
            if not closing:
                self.skip += 1
            return
        kept = []
        dropped = False
        for name, value in attrs:
            low = (value or "").strip().lower().replace("\x00", "")
            if name.lower().startswith("on") or re.sub(r"\s", "", low).startswith(
                ("javascript:", "vbscript:")
            ):
                dropped = True
                continue
            kept.append((name, value))
        if not dropped:
            self._emit(raw)
            return
        self.changed = True
        text = "".join(
            f" {n}" if v is None else f' {n}="{v.replace(chr(34), "&quot;")}"' for n, v in kept
        )
        self._emit(f"<{tag}{text}{' /' if closing else ''}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.skip = max(0, self.skip - 1)
            return
        self._emit(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self._emit(data)

    def handle_entityref(self, name: str) -> None:
        self._emit(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self._emit(f"&#{name};")

    def handle_comment(self, data: str) -> None:
        self._emit(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self._emit(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self._emit(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self._emit(f"<![{data}]>")


PLUGIN = Defang
