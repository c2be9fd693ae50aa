"""defang: remove banned attachments, and optionally scripts from HTML.

At end of message the MIME tree is walked (nested multiparts, attached
messages, containers sent in a transfer encoding, zip archives listed from
their central directory, TNEF (winmail.dat) attachments, uuencode, BinHex
and yEnc files inside text parts)
and each part is judged by every file name a program could read in its
headers, its declared MIME types, and its content (executable magic: PE
"MZ", ELF). Where readings differ (two names, two types, two encodings, a
header a lenient client reads on), every reading is judged and the
strictest wins.

Actions: ``replace`` puts a short text/plain notice in place of each
banned part and keeps every other part's bytes exactly as they were;
``reject`` refuses the message with 5.7.1 naming the file; ``quarantine``
asks the MTA to hold it. A header records what was done. What was removed
is saved first under ``save_dir`` with a name the plugin makes itself;
if it cannot be saved the message is tempfailed. A message with nothing to
remove is left exactly as it was. The walk runs in a worker thread and
reads the spooled body a window at a time.
"""

from __future__ import annotations

import asyncio
import itertools
import lzma
import os
import quopri
import re
import secrets
import shutil
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any, Literal

from miltrd.api import (
    CONTINUE,
    Action,
    Body,
    ConfigPath,
    Message,
    OptionError,
    Phase,
    Plugin,
    Verdict,
    reject,
    run_blocking,
    tempfail,
)

from ._archives import COMPRESSED, UNREADABLE, kind_of, single_file, tar_names
from ._decode import IDENTITY, Decoded, Source, chunks, decode_range, encode, spool
from ._mimewalk import Limits, Part, parse_tree, strict_reading
from ._names import extension, param_values, readings, shown
from ._nonmime import Block, binhex_decode, find_blocks
from ._render import Edits
from ._tnef import SIGNATURE as TNEF_SIGNATURE
from ._tnef import TnefError, read_tnef

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
_counter = itertools.count()
_BLOCK_TYPES = frozenset(
    {
        "application/x-uuencode", "application/uuencode", "application/x-uue",
        "application/uue", "text/x-uuencode", "application/x-yenc", "text/x-yenc",
    }
)  # fmt: skip
_HEAD = 64 * 1024  # decoded bytes enough to recognise an executable or an archive

Policy = Literal["ban", "allow", "tempfail"]


_SAVE_DIR = ConfigPath("/var/spool/miltrd/quarantine")


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
    encrypted_zip: Policy | None = None  # None: as on_limit
    other_archives: Policy | None = None  # rar, 7z, ace, arj, lzh, cab; None: as on_limit
    corrupt_zip: Policy = "ban"
    max_depth: int = 10
    max_parts: int = 500
    max_decoded_size: int = 50 * 1024 * 1024
    max_message_size: int = 100 * 1024 * 1024
    on_limit: Policy = "ban"
    on_malformed: Policy = "allow"
    clean_html: bool = False
    save: Literal["attachments", "message", "none"] = "attachments"
    save_dir: ConfigPath = _SAVE_DIR  # a relative path: to the config file's directory
    header: str = "X-Miltrd-Defang"


@dataclass
class Finding:
    part: Part
    name: str  # the file name as given, for people
    why: str
    block: Block | None = None  # a file inside a text part, not a MIME part
    text: Decoded | None = None  # the decoded text part holding ``block``
    cte: str = "7bit"  # the transfer encoding ``text`` was decoded by


@dataclass
class Outcome:
    """What the worker thread decided; applied to the message on the loop."""

    refuse: str | None = None  # a message-level reason to refuse
    tempfail: str | None = None
    findings: list[Finding] = field(default_factory=list)
    body: IO[bytes] | None = None  # the new body
    saved: list[str] = field(default_factory=list)  # paths written (or, dry run, not)
    root_replaced: bool = False
    summary: str = ""


def clean_filename(name: str) -> str:
    """The name as Windows stores it (the first of its readings' forms)."""
    return shown(name)


def extension_of(name: str) -> str:
    return extension(shown(name))


def is_executable(data: bytes) -> str | None:
    """What executable format ``data`` starts with, or None."""
    if data[:4] == b"\x7fELF":
        return "ELF executable"
    if data[:2] == b"MZ" and len(data) >= 64:
        offset = int.from_bytes(data[60:64], "little")
        if data[offset : offset + 4] == b"PE\x00\x00" or offset >= len(data):
            return "Windows executable (MZ/PE)"
    return None


class _Stopped(Exception):
    """The hook was given up on; the worker thread stops."""


class _BodySource:
    """The message body as a Source, read a window at a time; reading
    raises _Stopped once ``stop`` is set."""

    def __init__(self, body: Body, stop: threading.Event) -> None:
        self.body = body
        self.size = body.size
        self.stop = stop

    def read(self, start: int, end: int) -> bytes:
        if self.stop.is_set():
            raise _Stopped
        return self.body.read_range(start, end)


def _head(content: Decoded) -> bytes:
    head = content.head(4096)
    if head[:2] == b"MZ" and len(head) >= 64:
        offset = int.from_bytes(head[60:64], "little")
        if offset + 4 > len(head):
            return head + content.read(len(head), offset + 4)[-(offset + 4 - len(head)) :]
    return head


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
        self.limits = Limits(options.max_depth, options.max_parts, options.max_decoded_size)
        self.encrypted_zip: Policy = options.encrypted_zip or options.on_limit
        self.other_archives: Policy = options.other_archives or options.on_limit

    # --- judging ------------------------------------------------------------

    def writable_dirs(self) -> dict[str, str]:
        return {"save_dir": self.options.save_dir}

    def _judge_name(self, name: str) -> str | None:
        """Why ``name`` is banned under its strictest reading, or None."""
        for reading in sorted(readings(name)):
            ext = extension(reading)
            if ext in self.banned_ext:
                return f"file type .{ext} is not allowed"
        return None

    def _judge_zip(self, data: IO[bytes], depth: int) -> tuple[str | None, str | None]:
        """(why banned, why a limit or policy applies) for a zip archive."""
        try:
            archive = zipfile.ZipFile(data)
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
                return f"zip archive contains {shown(info.filename)}: {why}", None
            if info.flag_bits & 0x1:
                # Its names are judged above; its content cannot be looked into.
                banned, problem = self._policy(
                    self.encrypted_zip, "encrypted zip archive (content cannot be checked)"
                )
                if banned or problem:
                    return banned, problem
                self.log.info("encrypted zip member %s let through", shown(info.filename))
                continue
            if extension(info.filename) == "zip":
                if depth >= self.options.zip_depth:
                    return self._policy(self.options.on_limit, "zip archives nested too deep")
                if info.file_size > self.options.max_decoded_size:
                    return self._policy(self.options.on_limit, "nested zip archive too large")
                inner = spool()
                try:
                    with archive.open(info) as member:
                        shutil.copyfileobj(member, inner)
                    inner.seek(0)
                    banned, problem = self._judge_zip(inner, depth + 1)
                except Exception as exc:
                    return self._policy(self.options.corrupt_zip, f"corrupt zip archive ({exc!r})")
                finally:
                    inner.close()
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

    def _judge_content(
        self, content: Decoded, name: str, depth: int = 0
    ) -> tuple[str | None, str | None]:
        """Executable magic, archive members and TNEF attachments of decoded
        content; ``depth`` counts the TNEF streams it lies in."""
        head = _head(content)
        if head[:4] == TNEF_SIGNATURE:
            return self._judge_tnef(content, name, depth + 1)
        if self.options.sniff_executables:
            kind = is_executable(head)
            if kind:
                return f"{kind} content is not allowed", None
        if self.options.scan_zip and (head[:4] == b"PK\x03\x04" or extension(name) == "zip"):
            content.file.seek(0)
            return self._judge_zip(content.file, 1)
        if self.options.scan_zip:
            return self._judge_archive(content, head, name)
        return None, None

    def _judge_archive(
        self, content: Decoded, head: bytes, name: str
    ) -> tuple[str | None, str | None]:
        """Tar and single compressed files are looked into; archives the
        standard library cannot open go through ``other_archives``."""
        kind = kind_of(head)
        if kind in UNREADABLE:
            return self._policy(
                self.other_archives, f"{kind} archive (its content cannot be checked)"
            )
        if kind not in COMPRESSED:
            return None, None
        try:
            names = tar_names(
                content.file, self.options.max_zip_members, self.options.max_decoded_size
            )
            if names is not None:
                for member in names:
                    why = self._judge_name(member)
                    if why:
                        return f"{kind} archive contains {shown(member)}: {why}", None
                return None, None
        except OverflowError as exc:
            return self._policy(self.options.on_limit, str(exc))
        except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, ValueError) as exc:
            return self._policy(self.options.corrupt_zip, f"corrupt {kind} archive ({exc})")
        inner, data = single_file(content.file, kind, name, _HEAD)
        why = self._judge_name(inner) if inner else None
        if why is None and self.options.sniff_executables and is_executable(data):
            why = f"{is_executable(data)} content is not allowed"
        return (f"{kind} file holds {shown(inner)}: {why}" if why else None), None

    def _judge_tnef(self, content: Decoded, name: str, depth: int) -> tuple[str | None, str | None]:
        """The attachments inside TNEF (winmail.dat), judged like MIME
        attachments: by every name, the MIME tag and the content. A stream
        that cannot be read to its end, or nested too deep, goes through
        ``on_limit`` after what was read of it is judged."""
        if depth > self.options.max_depth:
            return self._policy(self.options.on_limit, "TNEF nested too deep")
        try:
            files, error = read_tnef(content, max_depth=self.options.max_depth), ""
        except TnefError as exc:
            files, error = exc.files, str(exc)
        troubles = []
        for f in files:
            label = f.names[0] if f.names else "(unnamed attachment)"
            held = f"TNEF attachment {shown(name)} holds {shown(label)}"
            for n in f.names:
                why = self._judge_name(n)
                if why:
                    return f"TNEF attachment {shown(name)} holds {shown(n)}: {why}", None
            if f.mime_tag in self.banned_types:
                return f"{held}: type {f.mime_tag} is not allowed", None
            if f.embedded or f.end <= f.start:
                continue  # an attached message's files are listed after it
            data = Decoded()
            try:
                for piece in chunks(content, f.start, f.end):
                    data.write(piece)
                why, trouble = self._judge_content(data, label, depth)
            finally:
                data.close()
            if why:
                return f"{held}: {why}", None
            troubles += [trouble] if trouble else []
        if error:
            return self._policy(
                self.options.on_limit, f"TNEF that cannot be read to its end ({error})"
            )
        return None, (troubles[0] if troubles else None)

    def _judge_part(self, part: Part) -> tuple[list[Finding], list[str]]:
        """Findings for one part judged as a leaf, and problems that tempfail."""
        names = part.names
        label = names[0] if names else f"(unnamed {part.content_type} part)"
        for name in names:
            why = self._judge_name(name)
            if why:
                return [Finding(part, name, why)], []
        for ctype in part.content_types:
            if ctype in self.banned_types:
                return [Finding(part, label, f"type {ctype} is not allowed")], []
        if part.children and all(_is_container(t) for t in part.content_types):
            return [], []  # its content is judged part by part
        problems: list[str] = []
        for cte in part.ctes:
            findings = self._judge_content_of(part, cte, label, problems)
            if findings:
                return findings, problems
        if part.strict_start is not None and not part.children:
            # A strict parser ends the headers early and shows the rest as
            # content: judge that reading too; a finding removes the part.
            strict = strict_reading(part)
            found, trouble = self._judge_part(strict)
            problems += trouble
            for f in found:
                if f.text is not None:
                    f.text.close()
                if f.block is not None:
                    f.block.content.close()
            if found:
                return [Finding(part, found[0].name, found[0].why)], problems
        return [], problems

    def _judge_content_of(
        self, part: Part, cte: str, label: str, problems: list[str]
    ) -> list[Finding]:
        """Judge the content of ``part`` decoded by ``cte``."""
        types = part.content_types
        # Clients show a text part, and a multipart they cannot split, as
        # text; uuencode and yEnc parts hold their blocks the same way.
        is_text = any(t.startswith(("text/", "multipart/")) or t in _BLOCK_TYPES for t in types)
        binhex = "application/mac-binhex40" in types
        limit = self.options.max_decoded_size
        full = is_text or binhex
        content = decode_range(
            part.source, part.content_start, part.end, cte, limit if full else _HEAD
        )
        if (
            not full
            and self.options.scan_zip
            and (
                content.head(4)[:4] == b"PK\x03\x04"
                or extension(label) == "zip"
                or kind_of(content.head(512)) in COMPRESSED
            )
        ) or (not full and content.head(4) == TNEF_SIGNATURE):
            content.close()
            content = decode_range(part.source, part.content_start, part.end, cte, limit)
            full = True
        owned = False
        try:
            if full and content.truncated:
                banned, trouble = self._policy(
                    self.options.on_limit, f"decoded size above {limit} bytes"
                )
                problems += [trouble] if trouble else []
                if banned:
                    return [Finding(part, label, banned)]
            if binhex:
                block = self._binhex_part(content)
                try:
                    why = self._judge_block(block, problems) if block else None
                finally:
                    if block:
                        block.content.close()
                if why and block:
                    return [Finding(part, block.name or label, why)]
            # The options are honoured inside; TNEF is looked into always.
            why, trouble = self._judge_content(content, label)
            problems += [trouble] if trouble else []
            if why:
                return [Finding(part, label, why)]
            if not is_text:
                return []
            findings = []
            blocks = find_blocks(content, limit, self.options.max_parts)
            if len(blocks) > self.options.max_parts:
                for block in blocks:
                    block.content.close()
                banned, trouble = self._policy(
                    self.options.on_limit,
                    f"more than {self.options.max_parts} files inside one text part",
                )
                problems += [trouble] if trouble else []
                return [Finding(part, label, banned)] if banned else []
            for block in blocks:
                why = self._judge_block(block, problems)
                if why:
                    findings.append(
                        Finding(part, block.name or "(unnamed file)", why, block, content, cte)
                    )
                else:
                    block.content.close()
            owned = bool(findings)  # the findings keep the text for the rewrite
            return findings
        finally:
            if not owned:
                content.close()

    @staticmethod
    def _binhex_part(content: Decoded) -> Block | None:
        data = content.read(0, content.size)
        start = data.find(b":")
        if start < 0:
            return None
        stop = data.find(b":", start + 1)
        name, fork = binhex_decode(data[start + 1 : stop if stop > 0 else None], 1 << 30)
        return Block("binhex", 0, content.size, name, fork)

    def _judge_block(self, block: Block, problems: list[str]) -> str | None:
        why = self._judge_name(block.name) if block.name else None
        if why:
            return why
        if block.content.truncated:
            banned, trouble = self._policy(
                self.options.on_limit, f"{block.kind} file above the decoded size bound"
            )
            problems += [trouble] if trouble else []
            if banned:
                return banned
        why, trouble = self._judge_content(block.content, block.name)
        problems += [trouble] if trouble else []
        return why

    def _judge_tree(self, node: Part, findings: list[Finding], problems: list[str]) -> str | None:
        """Judge ``node`` and below; returns a reason to refuse the whole
        message (a container that cannot be read part by part)."""
        if node.defects and not node.alternate:
            # An alternate reading's own structure is no fault of the
            # message (a nested b1x read by b1's loosest rule).
            text = "; ".join(node.defects)
            banned, trouble = self._policy(self.options.on_malformed, text)
            if banned and node.children:
                return f"malformed MIME ({banned})"
            if banned:
                findings.append(
                    Finding(node, node.names[0] if node.names else "(malformed part)", banned)
                )
                return None
            if trouble:
                problems.append(trouble)
        unseen = list(node.unseen)
        if "message/partial" in node.content_types:
            unseen.append("a message/partial fragment (the whole cannot be checked)")
        if unseen:
            banned, trouble = self._policy(self.options.on_limit, "; ".join(unseen))
            label = node.names[0] if node.names else f"(unnamed {node.content_type} part)"
            if banned and node.children:
                return banned
            if banned:
                findings.append(Finding(node, label, banned))
                return None
            if trouble:
                problems.append(trouble)
        found, trouble_list = self._judge_part(node)
        problems += trouble_list
        if found:
            findings += found
            return None
        for child in node.children:
            why = self._judge_tree(child, findings, problems)
            if why:
                return why
        return None

    # --- the hook -------------------------------------------------------------

    async def on_eom(self, msg: Message) -> Verdict | None:
        if msg.body.size > self.options.max_message_size:
            banned, problem = self._policy(self.options.on_limit, "message too large to scan")
            if problem:
                return tempfail("Message too large to scan now", code=451, xcode="4.3.0")
            if banned:  # nothing in it can be replaced unseen: the whole message goes
                return self._refuse(msg, [], banned)
            self.log.warning("message too large to scan (%d bytes): let through", msg.body.size)
            return None
        # The walk is CPU-heavy for big messages: a worker thread keeps
        # other connections served meanwhile.
        stop = threading.Event()
        try:
            outcome = await run_blocking(
                self._work,
                list(msg.headers),
                _BodySource(msg.body, stop),
                msg.queue_id,
                msg.observing,
                msg.conn.dry_run,
            )
        except asyncio.CancelledError:
            # The hook ran past its timeout (the message gets on_error): the
            # thread stops at its next read and saves nothing for it.
            stop.set()
            raise
        except OSError as exc:
            self.log.error("cannot save what was removed: %s: tempfail", exc)
            return tempfail(
                "Message could not be processed, try again later", code=451, xcode="4.3.0"
            )
        if outcome.tempfail:
            self.log.warning("%s: tempfail", outcome.tempfail)
            return tempfail(
                "Message could not be checked, try again later", code=451, xcode="4.3.0"
            )
        if outcome.refuse is not None:
            return self._refuse(msg, [], outcome.refuse)
        for path in outcome.saved:
            msg.record("saved", path)
        findings = outcome.findings
        for f in findings:
            self.log.warning("%s: %s", shown(f.name), f.why)
        if findings and self.options.action == "reject":
            return self._refuse(msg, findings, "")
        if findings and self.options.action == "quarantine":
            msg.quarantine("defang: " + "; ".join(f"{shown(f.name)}: {f.why}" for f in findings))
            msg.add_header(self.options.header, self._summary(findings, "held in quarantine"))
            return None
        if outcome.body is None:
            return None
        try:
            if outcome.root_replaced:
                msg.change_header("Content-Type", "text/plain; charset=utf-8")
                msg.change_header("Content-Transfer-Encoding", "quoted-printable")
                if msg.header("Content-Disposition") is not None:
                    msg.delete_header("Content-Disposition")
            msg.replace_body(outcome.body)
        finally:
            outcome.body.close()
        msg.add_header(self.options.header, outcome.summary)
        return None

    def _work(
        self,
        headers: list[tuple[str, str]],
        body: Source,
        queue_id: str,
        observing: bool,
        dry_run: bool,
    ) -> Outcome:
        try:
            root, limit_problems = parse_tree(body, headers, self.limits)
        except _Stopped:
            return Outcome()
        try:
            return self._decide(root, limit_problems, headers, body, queue_id, observing, dry_run)
        except _Stopped:
            return Outcome()
        finally:
            root.close()

    def _decide(
        self,
        root: Part,
        limit_problems: list[str],
        headers: list[tuple[str, str]],
        body: Source,
        queue_id: str,
        observing: bool,
        dry_run: bool,
    ) -> Outcome:
        problems: list[str] = []
        for problem in limit_problems:
            banned, trouble = self._policy(self.options.on_limit, problem)
            if banned:
                return Outcome(refuse=banned)
            if trouble:
                problems.append(trouble)
        findings: list[Finding] = []
        refuse = self._judge_tree(root, findings, problems)
        try:
            if refuse:
                return Outcome(refuse=refuse)
            if problems and not findings:
                return Outcome(tempfail="; ".join(problems))
            cleaned = self._clean_html(root) if self.options.clean_html else []
            if not findings and not cleaned:
                return Outcome()
            outcome = Outcome(findings=findings)
            if observing:
                saved: dict[int, str] = {}  # observe mode: no lasting change
            else:
                saved = self._save(headers, body, queue_id, findings, dry_run, outcome.saved)
            if self.options.action == "replace":
                self._rewrite(outcome, root, body, findings, saved, cleaned)
            return outcome
        finally:
            for f in findings:
                if f.block is not None:
                    f.block.content.close()
                if f.text is not None:
                    f.text.close()

    def _refuse(self, msg: Message, findings: list[Finding], why: str) -> Verdict:
        if self.options.action == "quarantine":
            msg.quarantine(f"defang: {why or findings[0].why}")
            return CONTINUE
        if findings:
            first = findings[0]
            text = f'Attachment "{shown(first.name)}" refused: {first.why}'
        else:
            text = f"Message refused: {why}"
        return reject(text, code=550, xcode="5.7.1", reason="defang")

    @staticmethod
    def _summary(findings: list[Finding], done: str) -> str:
        return "; ".join(f'{done} "{shown(f.name)}" ({f.why})' for f in findings)

    # --- saving ---------------------------------------------------------------

    def _save(
        self,
        headers: list[tuple[str, str]],
        body: Source,
        queue_id: str,
        findings: list[Finding],
        dry_run: bool,
        paths: list[str],
    ) -> dict[int, str]:
        """Save what is removed; the file name per finding. Under ``miltrd
        replay`` (dry run) the names are made as usual and nothing is
        written; ``paths`` gets what was (or would have been) saved."""
        if self.options.save == "none" or not findings:
            return {}
        if isinstance(body, _BodySource) and body.stop.is_set():
            raise _Stopped  # the message was given up on: nothing lasting
        day = Path(self.options.save_dir) / time.strftime("%Y-%m-%d")
        if not dry_run:
            day.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(day, 0o700)

        def write(path: Path, pieces: Iterator[bytes]) -> None:
            if isinstance(body, _BodySource) and body.stop.is_set():
                raise _Stopped
            if not dry_run:
                _write_private(path, pieces)

        base = re.sub(r"[^A-Za-z0-9]", "", queue_id) or secrets.token_hex(6)
        stamp = time.strftime("%H%M%S")
        saved: dict[int, str] = {}
        if self.options.save == "message":
            name = f"{stamp}-{base}-{next(_counter)}.eml"
            head = _header_bytes(headers) + b"\r\n"
            write(day / name, itertools.chain([head], chunks(body, 0, body.size)))
            paths.append(str(day / name))
            for f in findings:
                saved[id(f)] = name
            return saved
        for f in findings:
            name = f"{stamp}-{base}-{next(_counter)}.bin"
            if f.block is not None:
                write(day / name, chunks(f.block.content, 0, f.block.content.size))
            else:
                part = f.part
                payload = decode_range(
                    part.source,
                    part.content_start,
                    part.end,
                    part.cte,
                    self.options.max_decoded_size,
                )
                try:
                    write(day / name, chunks(payload, 0, payload.size))
                finally:
                    payload.close()
            info = f"original name: {shown(f.name)}\nreason: {f.why}\nqueue id: {queue_id}\n"
            write(day / (name + ".info"), iter([info.encode()]))
            paths.append(str(day / name))
            saved[id(f)] = name
        return saved

    # --- rewriting --------------------------------------------------------------

    @staticmethod
    def _notice_text(f: Finding, saved: str | None) -> str:
        return f'The attachment "{shown(f.name)}" was removed by the mail filter: {f.why}.\n' + (
            f"The administrators kept a copy ({saved}).\n" if saved else ""
        )

    def _notice(self, f: Finding, saved: str | None) -> bytes:
        text = self._notice_text(f, saved)
        encoded = quopri.encodestring(text.replace("\n", "\r\n").encode("utf-8"))
        return (
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n"
            b"Content-Disposition: inline\r\n"
            b"\r\n" + encoded
        )

    def _rewrite(
        self,
        outcome: Outcome,
        root: Part,
        body: Source,
        findings: list[Finding],
        saved: dict[int, str],
        cleaned: list[tuple[Part, bytes]],
    ) -> None:
        edits = Edits(body)
        for p in root.walk():
            if p.inner is not None:
                edits.layer(
                    p.inner, p.depth, (p.source, p.content_start, p.end, _encoding(p), "file")
                )
        for f in findings:
            if f.block is not None and f.text is not None:
                part = f.part
                owner = (part.source, part.content_start, part.end, f.cte, "file")
                edits.layer(f.text, part.depth + 0.5, owner)
                line = "[" + self._notice_text(f, saved.get(id(f))).replace("\n", " ").strip() + "]"
                edits.add(f.text, f.block.start, f.block.end, line.encode("ascii") + b"\r\n")
            elif f.part is root:
                outcome.root_replaced = True
                notice = self._notice(f, saved.get(id(f)))
                outcome.body = spool()
                outcome.body.write(notice.partition(b"\r\n\r\n")[2])
                outcome.body.seek(0)
            else:
                edits.add(
                    f.part.source, f.part.start, f.part.end, self._notice(f, saved.get(id(f)))
                )
        for p, new in cleaned:
            edits.add(p.source, p.content_start, p.end, new)
        if outcome.body is None:
            outcome.body = edits.render()
        what = []
        if findings:
            what.append(self._summary(findings, "removed"))
        if cleaned:
            what.append(f"scripts removed from {len(cleaned)} HTML part(s)")
        outcome.summary = "; ".join(what)

    def _clean_html(self, root: Part) -> list[tuple[Part, bytes]]:
        out = []
        for leaf in root.leaves():
            if leaf.content_type != "text/html" or len(leaf.ctes) > 1 or leaf.alternate:
                continue
            cte = leaf.cte
            payload = decode_range(
                leaf.source, leaf.content_start, leaf.end, cte, self.options.max_decoded_size
            )
            try:
                if payload.truncated:
                    continue
                data = payload.read(0, payload.size)
            finally:
                payload.close()
            charset = _charset(leaf) or "utf-8"
            try:
                text = data.decode(charset, "surrogateescape")
            except LookupError:
                charset = "utf-8"
                text = data.decode(charset, "surrogateescape")
            cleaner = _ScriptStripper()
            cleaner.feed(text)
            cleaner.close()
            if not cleaner.changed:
                continue
            new = Decoded()
            new.write(cleaner.result().encode(charset, "surrogateescape"))
            sink = spool()
            encode(new, cte if cte in ("base64", "quoted-printable") else "7bit", sink)
            new.close()
            sink.seek(0)
            out.append((leaf, sink.read()))
            sink.close()
        return out


def _is_container(ctype: str) -> bool:
    return ctype.startswith("multipart/") or ctype in (
        "message/rfc822",
        "message/global",
        "message/news",
    )


def _encoding(part: Part) -> str:
    return next((c for c in part.ctes if c not in IDENTITY), "7bit")


def _charset(part: Part) -> str | None:
    for value in part.values("content-type"):
        for cs in param_values(value, "charset"):
            return cs.strip().lower() or None
    return None


def _header_bytes(headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{n}: {v}".replace("\r\n", "\n").replace("\n", "\r\n") for n, v in headers]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


def _write_private(path: Path, pieces: Iterator[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        for piece in pieces:
            f.write(piece)
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
