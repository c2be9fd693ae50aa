"""bcc: add envelope recipients by rules, never duplicating one already there.

Each rule matches on direction (incoming / outgoing / internal, from
``[internal]``), sender patterns and recipient patterns (the address
patterns of ``miltrd.api.AddressPattern``, the same everywhere), and adds
the addresses in
``copy_to``. Templates: ``{user}`` and ``{domain}`` are the matching
recipient's (or, for a rule without recipient patterns, the sender's);
``{sender_user}``, ``{sender_domain}`` and ``{direction}`` are always set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from miltrd.api import (
    Action,
    Message,
    OptionError,
    Plugin,
    Verdict,
    domain_of,
    local_part,
    matches_any,
    option_patterns,
)

_SAFE = re.compile(r"[^A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]")
_FIELDS = {"user", "domain", "sender_user", "sender_domain", "direction"}


@dataclass(frozen=True)
class Rule:
    copy_to: list[str]
    direction: list[Literal["incoming", "outgoing", "internal"]] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BccOptions:
    rules: list[Rule] = field(default_factory=list)


def _safe(value: str) -> str:
    # Values come from the SMTP peer: keep them to characters valid in an address.
    return _SAFE.sub("_", value)


class Bcc(Plugin):
    Options = BccOptions
    actions = Action.ADD_RECIPIENTS

    def __init__(self, options: BccOptions, **kw: Any) -> None:
        super().__init__(options, **kw)
        self.senders = [
            option_patterns(r.senders, f"rules[{i}].senders") for i, r in enumerate(options.rules)
        ]
        self.recipients = [
            option_patterns(r.recipients, f"rules[{i}].recipients")
            for i, r in enumerate(options.rules)
        ]
        for i, rule in enumerate(options.rules):
            for j, template in enumerate(rule.copy_to):
                names = set(re.findall(r"{(\w*)}", template))
                if names - _FIELDS:
                    bad = ", ".join(sorted(names - _FIELDS))
                    raise OptionError(
                        f"rules[{i}].copy_to[{j}]", f"unknown template field {{{bad}}}"
                    )
                if "@" not in template:
                    raise OptionError(f"rules[{i}].copy_to[{j}]", "not an address")

    async def on_eom(self, msg: Message) -> Verdict | None:
        present = {r.lower() for r in msg.recipients}
        direction = msg.direction
        values = {
            "sender_user": _safe(local_part(msg.sender)),
            "sender_domain": _safe(msg.sender_domain),
            "direction": direction,
        }
        for i, rule in enumerate(self.options.rules):
            if rule.direction and direction not in rule.direction:
                continue
            if self.senders[i] and not matches_any(msg.sender, self.senders[i]):
                continue
            if self.recipients[i]:
                targets = [r for r in msg.recipients if matches_any(r, self.recipients[i])]
            else:
                targets = [msg.sender] if msg.sender else [""]
            for target in targets:
                fields = dict(
                    values, user=_safe(local_part(target)), domain=_safe(domain_of(target))
                )
                for template in rule.copy_to:
                    copy = template.format(**fields)
                    if copy.lower() in present or not copy.split("@")[0]:
                        continue
                    present.add(copy.lower())
                    msg.add_recipient(copy)
                    self.log.info("added <%s>", copy)
        return None


PLUGIN = Bcc
