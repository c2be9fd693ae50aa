"""From what the chain needs to what miltrd asks the MTA for (pure).

- a phase no plugin observes is switched off (SMFIP_NO*);
- a phase observed but decided by no plugin is made reply-less (SMFIP_NR_*),
  which saves a round trip per event;
- SKIP is asked for when someone reads the body, so the rest of the body
  can be skipped once nobody wants it;
- UNKNOWN commands are never asked for;
- actions are the union of the plugins' declared actions;
- macro lists are the chain's own plus every plugin's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..api import Action, Phase
from ..chain import Declared
from ..protocol import ActionFlag, MacroStage, ProtocolFlag

__all__ = ["Request", "request_for", "ACTION_BITS", "STEP_FLAGS"]

STEP_FLAGS: dict[Phase, tuple[ProtocolFlag, ProtocolFlag]] = {
    Phase.CONNECT: (ProtocolFlag.NOCONNECT, ProtocolFlag.NR_CONN),
    Phase.HELO: (ProtocolFlag.NOHELO, ProtocolFlag.NR_HELO),
    Phase.MAIL: (ProtocolFlag.NOMAIL, ProtocolFlag.NR_MAIL),
    Phase.RCPT: (ProtocolFlag.NORCPT, ProtocolFlag.NR_RCPT),
    Phase.DATA: (ProtocolFlag.NODATA, ProtocolFlag.NR_DATA),
    Phase.HEADER: (ProtocolFlag.NOHDRS, ProtocolFlag.NR_HDR),
    Phase.EOH: (ProtocolFlag.NOEOH, ProtocolFlag.NR_EOH),
    Phase.BODY: (ProtocolFlag.NOBODY, ProtocolFlag.NR_BODY),
}
ACTION_BITS: dict[Action, ActionFlag] = {
    Action.ADD_HEADERS: ActionFlag.ADDHDRS,
    Action.CHANGE_HEADERS: ActionFlag.CHGHDRS,
    Action.ADD_RECIPIENTS: ActionFlag.ADDRCPT | ActionFlag.ADDRCPT_PAR,
    Action.DELETE_RECIPIENTS: ActionFlag.DELRCPT,
    Action.CHANGE_SENDER: ActionFlag.CHGFROM,
    Action.REPLACE_BODY: ActionFlag.CHGBODY,
    Action.QUARANTINE: ActionFlag.QUARANTINE,
    # The chain adds its Authentication-Results header and deletes forged ones.
    Action.AUTH_RESULTS: ActionFlag.ADDHDRS | ActionFlag.CHGHDRS,
}
MACRO_STAGES: dict[Phase, MacroStage] = {
    Phase.CONNECT: MacroStage.CONNECT,
    Phase.HELO: MacroStage.HELO,
    Phase.MAIL: MacroStage.ENVFROM,
    Phase.RCPT: MacroStage.ENVRCPT,
    Phase.DATA: MacroStage.DATA,
    Phase.EOH: MacroStage.EOH,
    Phase.EOM: MacroStage.EOM,
}


@dataclass(frozen=True)
class Request:
    actions: ActionFlag
    protocol: ProtocolFlag
    macros: Mapping[MacroStage, tuple[str, ...]]


def request_for(declared: Declared) -> Request:
    protocol = ProtocolFlag.NOUNKNOWN | ProtocolFlag.NR_UNKN
    for phase, (off, no_reply) in STEP_FLAGS.items():
        if not phase & declared.observes:
            protocol |= off
        elif not phase & declared.decides:
            protocol |= no_reply
    # SKIP only helps where body chunks get a reply to carry it.
    if Phase.BODY & declared.observes and Phase.BODY & declared.decides:
        protocol |= ProtocolFlag.SKIP
    actions = ActionFlag.NONE
    for api_action, bits in ACTION_BITS.items():
        if api_action & declared.actions:
            actions |= bits
    macros = {
        MACRO_STAGES[phase]: tuple(sorted(names))
        for phase, names in declared.macros.items()
        if phase in MACRO_STAGES and names
    }
    return Request(actions, protocol, dict(sorted(macros.items())))
