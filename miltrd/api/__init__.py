"""The plugin API: everything a plugin imports comes from here.

This package imports nothing else of miltrd, so a plugin written against
it does not depend on the daemon's internals.
"""

from .addresses import AddressPattern, domain_pattern, matches_any, option_patterns
from .authresults import AuthResult, authserv_id_of, format_authentication_results
from .changes import (
    BodyReplacement,
    Change,
    HeaderAddition,
    HeaderChange,
    HeaderInsertion,
    Quarantining,
    RecipientAddition,
    RecipientDeletion,
    SenderChange,
)
from .context import (
    Body,
    Caller,
    Connection,
    InternalRules,
    Message,
    PluginContractError,
    apply_header_changes,
    bare_address,
    domain_of,
    local_part,
    parse_ip,
)
from .paths import ConfigPath
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
    "AddressPattern",
    "domain_pattern",
    "matches_any",
    "option_patterns",
    "ACCEPT",
    "CONTINUE",
    "DECIDING_PHASES",
    "DISCARD",
    "HOOKS",
    "MESSAGE_PHASES",
    "Action",
    "HeaderAddition",
    "RecipientAddition",
    "AuthResult",
    "Body",
    "Caller",
    "HeaderChange",
    "SenderChange",
    "Connection",
    "RecipientDeletion",
    "HeaderInsertion",
    "Message",
    "Change",
    "ConfigPath",
    "NoOptions",
    "OptionError",
    "Phase",
    "Plugin",
    "PluginContractError",
    "Quarantining",
    "BodyReplacement",
    "InternalRules",
    "SmtpReply",
    "Verdict",
    "VerdictKind",
    "apply_header_changes",
    "authserv_id_of",
    "bare_address",
    "clean_text",
    "domain_of",
    "fold_header",
    "format_authentication_results",
    "header_text",
    "local_part",
    "parse_ip",
    "reject",
    "reply_lines",
    "run_blocking",
    "tempfail",
]
