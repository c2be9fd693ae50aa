"""What a hook returns: a verdict, optionally with an SMTP reply."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .wiretext import clean_text, reply_lines

__all__ = [
    "VerdictKind",
    "SmtpReply",
    "Verdict",
    "CONTINUE",
    "ACCEPT",
    "DISCARD",
    "reject",
    "tempfail",
]

_XCODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")


class VerdictKind(enum.Enum):
    """What a hook answers: continue, accept (this plugin is done with the
    message), reject (5xx), tempfail (4xx), discard (accept and drop)."""

    # Members are singletons: hashing by identity agrees with equality, and
    # Enum's own __hash__ is a call into Python at every dict lookup.
    __hash__ = object.__hash__

    CONTINUE = "continue"
    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """An SMTP reply: code (4xx or 5xx), enhanced status code, text lines.

    ``lines`` keep the text as given, cleaned of control characters so
    nothing from a peer can break the reply. What goes to the MTA is
    ``wire_lines()``: printable ASCII unless the client used SMTPUTF8,
    wrapped to RFC 5321's 512-octet reply lines.
    """

    code: int
    xcode: str | None
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 400 <= self.code <= 599:
            raise ValueError(f"SMTP reply code {self.code} is not 4xx or 5xx")
        if self.xcode is not None and (
            not _XCODE.match(self.xcode) or self.xcode[0] != str(self.code)[0]
        ):
            raise ValueError(f"enhanced status {self.xcode!r} does not fit code {self.code}")
        if not 1 <= len(self.lines) <= 32:
            raise ValueError("an SMTP reply has 1 to 32 lines")
        cleaned = tuple(clean_text(line) for line in self.lines)
        object.__setattr__(self, "lines", cleaned)

    def wire_lines(self, *, smtputf8: bool = False) -> tuple[str, ...]:
        """The text lines as the MTA may send them to the SMTP client:
        printable ASCII (UTF-8 only if ``smtputf8``), each reply line with
        code, enhanced code and CRLF at most 512 octets, at most 32 lines."""
        prefix = len(str(self.code)) + 1 + (len(self.xcode) + 1 if self.xcode else 0)
        return reply_lines(self.lines, prefix=prefix, smtputf8=smtputf8)

    def __str__(self) -> str:
        prefix = f"{self.code} {self.xcode} " if self.xcode else f"{self.code} "
        return prefix + " / ".join(self.lines)


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    reply: SmtpReply | None = None
    reason: str = ""  # for the log, never sent

    def __post_init__(self) -> None:
        if self.reply is not None:
            if self.kind is VerdictKind.REJECT and self.reply.code < 500:
                raise ValueError("a reject needs a 5xx reply")
            if self.kind is VerdictKind.TEMPFAIL and self.reply.code >= 500:
                raise ValueError("a tempfail needs a 4xx reply")
            if self.kind not in (VerdictKind.REJECT, VerdictKind.TEMPFAIL):
                raise ValueError(f"{self.kind.value} carries no SMTP reply")

    @property
    def ends_message(self) -> bool:
        """True for reject, tempfail and discard: nothing more of the message is read."""
        return self.kind in _ENDING

    def describe(self) -> str:
        """``"reject (550 5.7.1 text)"``: the kind, with the reply or the reason, for logs."""
        text = self.kind.value
        if self.reply is not None:
            text += f" ({self.reply})"
        elif self.reason:
            text += f" ({self.reason})"
        return text


# Bound once (ends_message runs at every verdict the chain settles): an
# Enum member read from its class is a call into Python on Python 3.11.
_ENDING = (VerdictKind.REJECT, VerdictKind.TEMPFAIL, VerdictKind.DISCARD)

CONTINUE = Verdict(VerdictKind.CONTINUE)
ACCEPT = Verdict(VerdictKind.ACCEPT)
DISCARD = Verdict(VerdictKind.DISCARD)


def _split(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return (text,) if isinstance(text, str) else tuple(text)


def reject(
    text: str | list[str] | tuple[str, ...] = "Message rejected",
    *,
    code: int = 550,
    xcode: str | None = "5.7.1",
    reason: str = "",
) -> Verdict:
    """A 5xx verdict with its SMTP reply."""
    return Verdict(VerdictKind.REJECT, SmtpReply(code, xcode, _split(text)), reason)


def tempfail(
    text: str | list[str] | tuple[str, ...] = "Try again later",
    *,
    code: int = 451,
    xcode: str | None = "4.7.1",
    reason: str = "",
) -> Verdict:
    """A 4xx verdict with its SMTP reply."""
    return Verdict(VerdictKind.TEMPFAIL, SmtpReply(code, xcode, _split(text)), reason)
