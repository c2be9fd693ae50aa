"""wiretap: archive copies of mail, per user, and wiretap recipients.

Archive rules pick messages by direction (incoming, outgoing, internal,
from ``[internal]``), sender and recipient patterns, and write one copy to
each destination their path template names, below ``root``:

- Maildir: written to ``tmp/``, fsync'd, renamed into ``new/`` (and the
  directory fsync'd) before the message is accepted at the MTA;
- mbox: appended under an fcntl lock (and a per-file lock between the
  threads of one process), with a From_ line and mboxrd ">From" quoting.

The copy is one consistent message, headers and body from the same moment:
as received (``copy = "received"``, the default) or as the plugins before
wiretap in the chain left it (``copy = "delivered"``), preceded by
``X-Miltrd-Envelope-*`` headers carrying the sender, each recipient, the
client and the queue id (added to the copy only, written by the same
rules as headers added to mail). Values from the message that go into a path
(``{user}``, ``{domain}``) are reduced to safe characters, so a path can
never leave ``root``. An archive that cannot be written tempfails the
message (nothing goes unarchived) unless its rule is ``best_effort``.

Copies are at least once: the copy is durable before the end-of-message
reply, and the MTA's acceptance after it is never confirmed to a milter,
so a session cut in between (worker killed, timeout) leaves a copy and
the sender's retry writes another (README, "Faults").

Tap rules add a copy recipient to all mail to or from listed users.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from miltrd.api import (
    Action,
    Body,
    ConfigPath,
    Message,
    OptionError,
    Phase,
    Plugin,
    Verdict,
    domain_of,
    fold_header,
    local_part,
    matches_any,
    option_patterns,
    run_blocking,
    tempfail,
)

Direction = Literal["incoming", "outgoing", "internal"]
_FIELDS = {"direction", "domain", "user", "date", "year", "month"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")
_counter = itertools.count()
_mbox_locks: dict[str, threading.Lock] = {}
_mbox_locks_guard = threading.Lock()


@dataclass(frozen=True)
class ArchiveRule:
    path: str  # template below root, e.g. "{direction}/{domain}/{user}"
    format: Literal["maildir", "mbox"] = "maildir"
    direction: list[Direction] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    side: Literal["recipient", "sender"] = "recipient"
    best_effort: bool = False


@dataclass(frozen=True)
class TapRule:
    users: list[str]  # address patterns (miltrd.api.AddressPattern)
    copy_to: str


_ROOT = ConfigPath("/var/spool/miltrd/archive")


@dataclass(frozen=True)
class WiretapOptions:
    root: ConfigPath = _ROOT  # a relative path: to the config file's directory
    # received: the message as the MTA sent it; delivered: as the plugins
    # before wiretap in the chain left it (put wiretap last for the copy to
    # be exactly what is delivered). Either way one consistent message.
    copy: Literal["received", "delivered"] = "received"
    archive: list[ArchiveRule] = field(default_factory=list)
    tap: list[TapRule] = field(default_factory=list)


def safe_component(value: str) -> str:
    """A value from the message made safe as one path component."""
    value = _UNSAFE.sub("_", value).strip(".")
    return value or "_"


def _lock_for(path: str) -> threading.Lock:
    with _mbox_locks_guard:
        return _mbox_locks.setdefault(path, threading.Lock())


class Wiretap(Plugin):
    Options = WiretapOptions
    actions = Action.ADD_RECIPIENTS
    needs = Phase.HEADER | Phase.BODY

    def __init__(self, options: WiretapOptions, **kw: Any) -> None:
        super().__init__(options, **kw)
        if not os.path.isabs(options.root):
            raise OptionError("root", "must be an absolute path")
        self.root = Path(options.root)
        for i, rule in enumerate(options.archive):
            names = set(re.findall(r"{(\w*)}", rule.path))
            if names - _FIELDS:
                bad = ", ".join(sorted(names - _FIELDS))
                raise OptionError(f"archive[{i}].path", f"unknown template field {{{bad}}}")
            if rule.path.startswith("/") or ".." in Path(rule.path).parts:
                raise OptionError(f"archive[{i}].path", "must be relative, below root")
        # One pattern language for every rule (miltrd.api.addresses).
        self.senders = [
            option_patterns(r.senders, f"archive[{i}].senders")
            for i, r in enumerate(options.archive)
        ]
        self.recipients = [
            option_patterns(r.recipients, f"archive[{i}].recipients")
            for i, r in enumerate(options.archive)
        ]
        self.tap_users = [
            option_patterns(t.users, f"tap[{i}].users") for i, t in enumerate(options.tap)
        ]
        for i, tap in enumerate(options.tap):
            if "@" not in tap.copy_to:
                raise OptionError(f"tap[{i}].copy_to", "not an address")
        self.hostname = safe_component(socket.gethostname())

    async def on_eom(self, msg: Message) -> Verdict | None:
        self._tap(msg)
        failed = False
        for i, rule in enumerate(self.options.archive):
            if not self._selects(i, rule, msg):
                continue
            for target in sorted(self._targets(i, rule, msg)):
                if msg.conn.dry_run:  # miltrd replay: say where, write nothing
                    msg.record("archived", f"{target} ({rule.format})")
                    continue
                if msg.observing:  # observe mode makes no lasting change
                    self.log.info("would archive to %s (%s)", target, rule.format)
                    continue
                try:
                    await run_blocking(self._write, rule.format, target, msg)
                except Exception as exc:
                    self.log.error(
                        "archive %s (%s) failed: %s%s",
                        target,
                        rule.format,
                        exc,
                        " (best effort: message passes)" if rule.best_effort else "",
                    )
                    failed = failed or not rule.best_effort
                else:
                    self.log.info("archived to %s (%s)", target, rule.format)
                    msg.record("archived", f"{target} ({rule.format})")
        if failed:
            return tempfail(
                "Message could not be archived, try again later",
                code=451,
                xcode="4.3.0",
                reason="archive failed",
            )
        return None

    # --- selection ----------------------------------------------------------

    def writable_dirs(self) -> dict[str, str]:
        return {"root": str(self.root)}

    def _selects(self, i: int, rule: ArchiveRule, msg: Message) -> bool:
        if rule.direction and msg.direction not in rule.direction:
            return False
        if self.senders[i] and not matches_any(msg.sender, self.senders[i]):
            return False
        recipients = self.recipients[i]
        return not recipients or any(matches_any(r, recipients) for r in msg.recipients)

    def _targets(self, i: int, rule: ArchiveRule, msg: Message) -> set[Path]:
        now = time.localtime()
        if rule.side == "sender":
            addresses = [msg.sender or "MAILER-DAEMON"]
        elif rule.recipients:
            addresses = [r for r in msg.recipients if matches_any(r, self.recipients[i])]
        else:
            addresses = list(msg.recipients)
        targets = set()
        for address in addresses:
            values = {
                "direction": msg.direction,
                "domain": safe_component(domain_of(address) or "local"),
                "user": safe_component(local_part(address).lower()),
                "date": time.strftime("%Y-%m-%d", now),
                "year": time.strftime("%Y", now),
                "month": time.strftime("%m", now),
            }
            relative = Path(rule.path.format(**values))
            target = (self.root / relative).resolve()
            # safe_component makes this impossible; keep the check anyway.
            if self.root.resolve() not in target.parents and target != self.root.resolve():
                raise ValueError(f"archive path {target} escapes {self.root}")
            targets.add(target)
        return targets

    def _tap(self, msg: Message) -> None:
        present = {r.lower() for r in msg.recipients}
        for tap, users in zip(self.options.tap, self.tap_users, strict=True):
            parties = [msg.sender, *msg.recipients]
            if any(p and matches_any(p, users) for p in parties) and (
                tap.copy_to.lower() not in present
            ):
                msg.add_recipient(tap.copy_to)
                present.add(tap.copy_to.lower())
                self.log.info("copy to <%s>", tap.copy_to)

    # --- writing (in a worker thread) -----------------------------------------

    def _envelope(self, msg: Message) -> bytes:
        fields = [("X-Miltrd-Envelope-From", f"<{msg.sender}>")]
        fields += [("X-Miltrd-Envelope-To", f"<{r}>") for r in msg.recipients]
        fields.append(("X-Miltrd-Client", f"{msg.conn.hostname} [{msg.conn.address or ''}]"))
        if msg.queue_id:
            fields.append(("X-Miltrd-Queue-Id", msg.queue_id))
        fields.append(("X-Miltrd-Copy", f"as {self.options.copy}"))
        fields.append(("X-Miltrd-Direction", msg.direction))
        # The same rules as headers added to mail: 7-bit, folded, no line
        # over 998 octets, nothing from the peer starts a line of its own.
        lines = [f"{name}: {fold_header(name, value)}" for name, value in fields]
        return "".join(line.replace("\n", "\r\n") + "\r\n" for line in lines).encode("ascii")

    def _copy(self, msg: Message) -> tuple[list[tuple[str, str]], Body]:
        """The message to archive: headers and body from the same moment."""
        if self.options.copy == "delivered":
            return msg.headers, msg.body
        return msg.received_headers, msg.received_body

    @staticmethod
    def _header_block(headers: list[tuple[str, str]]) -> bytes:
        out = []
        for name, value in headers:
            # Folded values arrive with bare LF between their lines.
            text = f"{name}: {value}".replace("\r\n", "\n").replace("\n", "\r\n")
            out.append(text.encode("utf-8", "surrogateescape") + b"\r\n")
        return b"".join(out) + b"\r\n"

    def _write(self, fmt: str, target: Path, msg: Message) -> None:
        headers, body = self._copy(msg)
        head = self._envelope(msg) + self._header_block(headers)
        if fmt == "mbox":
            self._write_mbox(target, head, msg, body)
        else:
            self._write_maildir(target, head, body)

    def _makedirs(self, path: Path) -> None:
        """Create path and its missing parents, each with mode 0700."""
        missing = []
        while not path.exists():
            missing.append(path)
            path = path.parent
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # the umask may have narrowed it

    def _write_maildir(self, target: Path, head: bytes, body: Body) -> None:
        for sub in ("tmp", "new", "cur"):
            self._makedirs(target / sub)
        now = time.time_ns()
        unique = f"M{now // 1000 % 1000000}P{os.getpid()}Q{next(_counter)}"
        name = f"{now // 1_000_000_000}.{unique}.{self.hostname}"
        tmp = target / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(head)
                for chunk in body.chunks():
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, target / "new" / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(target / "new")

    def _write_mbox(self, target: Path, head: bytes, msg: Message, body: Body) -> None:
        self._makedirs(target.parent)
        stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime())
        sender = safe_component(msg.sender) if msg.sender else "MAILER-DAEMON"
        from_line = f"From {sender} {stamp}\n"
        with _lock_for(str(target)):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as f:
                fcntl.lockf(f, fcntl.LOCK_EX)
                try:
                    start = f.seek(0, os.SEEK_END)
                    try:
                        f.write(from_line.encode())
                        for line in _lines(head, body):
                            if _FROM_QUOTE.match(line):
                                f.write(b">")
                            f.write(line)
                        f.write(b"\n")
                        f.flush()
                        os.fsync(f.fileno())
                    except BaseException:
                        f.truncate(start)  # never leave half a message behind
                        raise
                finally:
                    fcntl.lockf(f, fcntl.LOCK_UN)


_FROM_QUOTE = re.compile(rb">*From ")


def _lines(head: bytes, body: Body) -> Any:
    yield from head.splitlines(keepends=True)
    pending = b""
    for chunk in body.chunks():
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending + b"\n"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


PLUGIN = Wiretap
