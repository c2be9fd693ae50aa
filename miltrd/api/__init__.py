"""The plugin API: everything a plugin imports comes from here.

This package imports nothing else of miltrd, so a plugin written against
it does not depend on the daemon's internals.
"""

from .context import (
    Body,
    Connection,
    Message,
    PluginContractError,
    Site,
    bare_address,
    domain_of,
    local_part,
    parse_ip,
)
from .mutations import (
    AddHeader,
    AddRecipient,
    ChangeHeader,
    ChangeSender,
    DeleteRecipient,
    InsertHeader,
    Mutation,
    Quarantine,
    ReplaceBody,
)
from .phases import DECIDING_PHASES, MESSAGE_PHASES, Action, Phase
from .plugin import HOOKS, NoOptions, OptionError, Plugin, run_blocking
from .verdicts import (
    ACCEPT,
    CONTINUE,
    DISCARD,
    SmtpReply,
    Verdict,
    VerdictKind,
    reject,
    tempfail,
)
from .wiretext import clean_text, fold_header, header_text, reply_lines

__all__ = [
    "ACCEPT",
    "CONTINUE",
    "DECIDING_PHASES",
    "DISCARD",
    "HOOKS",
    "MESSAGE_PHASES",
    "Action",
    "AddHeader",
    "AddRecipient",
    "Body",
    "ChangeHeader",
    "ChangeSender",
    "Connection",
    "DeleteRecipient",
    "InsertHeader",
    "Message",
    "Mutation",
    "NoOptions",
    "OptionError",
    "Phase",
    "Plugin",
    "PluginContractError",
    "Quarantine",
    "ReplaceBody",
    "Site",
    "SmtpReply",
    "Verdict",
    "VerdictKind",
    "bare_address",
    "clean_text",
    "domain_of",
    "fold_header",
    "header_text",
    "local_part",
    "parse_ip",
    "reject",
    "reply_lines",
    "run_blocking",
    "tempfail",
]
