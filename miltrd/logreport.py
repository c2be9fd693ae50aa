"""``miltrd stats``: a pflogsumm-like report from miltrd's own log lines.

Reads the one summary line miltrd writes per message (and the per-recipient
refusal lines) from stderr/journal exports or syslog files, in any of the
usual timestamp forms, and counts messages by action, the plugins that
refused mail and why, the senders and client addresses refused, what the
plugins changed (headers added, bodies replaced, copies archived...), and
the volume per hour.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Stats", "parse_lines", "report"]

_SUMMARY = re.compile(
    r"summary client=(?P<client>\S*) from=<(?P<sender>[^>]*)> to=(?P<to>\S*) "
    r"rejected=(?P<rejected>\S*) plugins=(?P<plugins>\S*) "
    r"(?:changes=(?P<changes>\S*) )?action=(?P<action>.*?) "
    r"time=(?P<time>[\d.]+)s\s*$"
)
_REFUSED = re.compile(r"recipient <(?P<rcpt>[^>]*)> refused by (?P<plugin>\S*): (?P<what>.*)$")
_STAMPS = [
    (re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}):\d{2}:\d{2}"), "iso"),
    (re.compile(r"^([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):\d{2}:\d{2}"), "syslog"),
]
_REFUSING = ("reject", "tempfail", "discard")
# The client is NAME[ADDRESS]; with no name Postfix sends "[ADDRESS]" as the
# name, so the line reads [ADDRESS][ADDRESS]: the address is the last pair.
_CLIENT_IP = re.compile(r"\[([^\[\]]*)\]$")


@dataclass
class Stats:
    messages: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    refusing_plugins: Counter[str] = field(default_factory=Counter)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    senders_refused: Counter[str] = field(default_factory=Counter)
    clients_refused: Counter[str] = field(default_factory=Counter)
    recipients_refused: int = 0
    per_hour: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)  # "plugin change": messages


def _hour(line: str) -> str:
    for pattern, kind in _STAMPS:
        m = pattern.search(line)
        if m:
            if kind == "iso":
                return f"{m.group(1)} {m.group(2)}:00"
            try:
                month = datetime.strptime(m.group(1), "%b").month
            except ValueError:
                return "unknown"
            return f"{month:02d}-{int(m.group(2)):02d} {m.group(3)}:00"
    return "unknown"


def parse_lines(lines: Iterable[str], stats: Stats | None = None) -> Stats:
    stats = stats or Stats()
    for line in lines:
        if "summary client=" in line:
            m = _SUMMARY.search(line)
            if not m:
                continue
            stats.messages += 1
            action_text = m.group("action")
            action = action_text.split(" ", 1)[0]
            stats.actions[action] += 1
            stats.per_hour[_hour(line)] += 1
            reply = ""
            if "(" in action_text and ")" in action_text:
                reply = action_text[action_text.index("(") + 1 : action_text.rindex(")")]
            for item in m.group("plugins").split(","):
                name, _, verdict = item.partition(":")
                if verdict.startswith(("error", "timeout")):
                    stats.errors[f"{name} {verdict.split('->')[0]}"] += 1
                if action in _REFUSING and verdict.split("->")[-1] == action:
                    stats.refusing_plugins[name] += 1
                    stats.reasons[(name, reply or action)] += 1
            for item in (m.group("changes") or "-").split(","):
                name, _, kinds = item.partition(":")
                for kind in kinds.split("+") if kinds else ():
                    stats.changes[f"{name} {kind}"] += 1
            if action in _REFUSING:
                stats.senders_refused[m.group("sender") or "<>"] += 1
                client = m.group("client")
                bracketed = _CLIENT_IP.search(client)
                ip = bracketed.group(1) if bracketed else client
                stats.clients_refused[ip or "unknown"] += 1
        elif " refused by " in line:
            r = _REFUSED.search(line)
            if r:
                stats.recipients_refused += 1
                stats.refusing_plugins[r.group("plugin")] += 1
                what = r.group("what")
                reason = what[what.find("(") + 1 : what.rfind(")")] if "(" in what else what
                stats.reasons[(r.group("plugin"), reason)] += 1
    return stats


def _table(title: str, counter: Counter[str], limit: int = 10) -> list[str]:
    lines = [title]
    if not counter:
        return [*lines, "  (none)", ""]
    width = max(len(k) for k, _ in counter.most_common(limit))
    lines += [f"  {k:<{width}}  {v:>7}" for k, v in counter.most_common(limit)]
    return [*lines, ""]


def report(stats: Stats, limit: int = 10) -> str:
    if not stats.messages and not stats.recipients_refused:
        return (
            "miltrd stats: no summary lines found (miltrd writes one per message "
            'at log_level "info" or "debug")\n'
        )
    out = [f"miltrd stats: {stats.messages} messages", ""]
    total = max(stats.messages, 1)
    out.append("Messages by action")
    for action, count in stats.actions.most_common():
        out.append(f"  {action:<10} {count:>7}  {100 * count / total:5.1f}%")
    out.append(f"  recipients refused one by one: {stats.recipients_refused}")
    out.append("")
    out += _table("Refusing plugins (messages and recipients)", stats.refusing_plugins, limit)
    reasons = Counter({f"{p}: {r}": n for (p, r), n in stats.reasons.items()})
    out += _table("Top reasons", reasons, limit)
    out += _table("Top senders refused", stats.senders_refused, limit)
    out += _table("Top client addresses refused", stats.clients_refused, limit)
    out += _table("Changes by plugin (messages)", stats.changes, limit)
    if stats.errors:
        out += _table("Plugin errors and timeouts", stats.errors, limit)
    out.append("Messages per hour")
    for hour in sorted(stats.per_hour):
        out.append(f"  {hour}  {stats.per_hour[hour]:>7}")
    return "\n".join(out) + "\n"
