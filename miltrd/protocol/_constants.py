"""Wire constants of the milter protocol (libmilter's mfdef.h, in our words).

Each member carries the libmilter name in a comment so that a reader can
match it against Sendmail's and Postfix's documentation.
"""

from __future__ import annotations

import enum

__all__ = [
    "MAX_VERSION",
    "MIN_VERSION",
    "CHUNK_SIZE",
    "MDS_64K",
    "MDS_256K",
    "MDS_1M",
    "MAX_REPLY_LINES",
    "MAX_REPLY_LINE",
    "Command",
    "Response",
    "ActionFlag",
    "ProtocolFlag",
    "MacroStage",
    "Family",
    "ACTIONS_BY_VERSION",
    "PROTOCOL_BY_VERSION",
    "NO_STEP_FLAG",
    "NO_REPLY_FLAG",
]

MIN_VERSION = 2  # the oldest MTA version libmilter accepts
MAX_VERSION = 6  # SMFI_PROT_VERSION (Sendmail 8.14+, Postfix 2.6+)

CHUNK_SIZE = 65535  # MILTER_CHUNK_SIZE: body chunks and REPLBODY pieces
MDS_64K = 64 * 1024 - 1  # MILTER_MDS_64K == MILTER_MAX_DATA_SIZE
MDS_256K = 256 * 1024 - 1  # MILTER_MDS_256K
MDS_1M = 1024 * 1024 - 1  # MILTER_MDS_1M

MAX_REPLY_LINES = 32  # smfi_setmlreply accepts at most 32 lines
MAX_REPLY_LINE = 980  # MAXREPLYLEN: text of one reply line


class Command(enum.IntEnum):
    """Codes of packets the MTA sends to the filter (SMFIC_*)."""

    ABORT = ord("A")  # SMFIC_ABORT
    BODY = ord("B")  # SMFIC_BODY
    CONNECT = ord("C")  # SMFIC_CONNECT
    MACRO = ord("D")  # SMFIC_MACRO
    BODYEOB = ord("E")  # SMFIC_BODYEOB
    HELO = ord("H")  # SMFIC_HELO
    QUIT_NC = ord("K")  # SMFIC_QUIT_NC (v6)
    HEADER = ord("L")  # SMFIC_HEADER
    MAIL = ord("M")  # SMFIC_MAIL
    EOH = ord("N")  # SMFIC_EOH
    OPTNEG = ord("O")  # SMFIC_OPTNEG
    QUIT = ord("Q")  # SMFIC_QUIT
    RCPT = ord("R")  # SMFIC_RCPT
    DATA = ord("T")  # SMFIC_DATA (v4)
    UNKNOWN = ord("U")  # SMFIC_UNKNOWN (v3)


class Response(enum.IntEnum):
    """Codes of packets the filter sends to the MTA (SMFIR_*)."""

    ADDRCPT = ord("+")  # SMFIR_ADDRCPT
    DELRCPT = ord("-")  # SMFIR_DELRCPT
    ADDRCPT_PAR = ord("2")  # SMFIR_ADDRCPT_PAR
    SHUTDOWN = ord("4")  # SMFIR_SHUTDOWN
    ACCEPT = ord("a")  # SMFIR_ACCEPT
    REPLBODY = ord("b")  # SMFIR_REPLBODY
    CONTINUE = ord("c")  # SMFIR_CONTINUE
    DISCARD = ord("d")  # SMFIR_DISCARD
    CHGFROM = ord("e")  # SMFIR_CHGFROM
    CONN_FAIL = ord("f")  # SMFIR_CONN_FAIL
    ADDHEADER = ord("h")  # SMFIR_ADDHEADER
    INSHEADER = ord("i")  # SMFIR_INSHEADER
    SETSYMLIST = ord("l")  # SMFIR_SETSYMLIST
    CHGHEADER = ord("m")  # SMFIR_CHGHEADER
    PROGRESS = ord("p")  # SMFIR_PROGRESS
    QUARANTINE = ord("q")  # SMFIR_QUARANTINE
    REJECT = ord("r")  # SMFIR_REJECT
    SKIP = ord("s")  # SMFIR_SKIP
    TEMPFAIL = ord("t")  # SMFIR_TEMPFAIL
    REPLYCODE = ord("y")  # SMFIR_REPLYCODE
    OPTNEG = ord("O")  # the OPTNEG reply reuses SMFIC_OPTNEG


class ActionFlag(enum.IntFlag):
    """What the filter may change at end of message (SMFIF_*)."""

    NONE = 0  # SMFIF_NONE
    ADDHDRS = 0x001  # SMFIF_ADDHDRS
    CHGBODY = 0x002  # SMFIF_CHGBODY (SMFIF_MODBODY)
    ADDRCPT = 0x004  # SMFIF_ADDRCPT
    DELRCPT = 0x008  # SMFIF_DELRCPT
    CHGHDRS = 0x010  # SMFIF_CHGHDRS
    QUARANTINE = 0x020  # SMFIF_QUARANTINE
    CHGFROM = 0x040  # SMFIF_CHGFROM (v6)
    ADDRCPT_PAR = 0x080  # SMFIF_ADDRCPT_PAR (v6)
    SETSYMLIST = 0x100  # SMFIF_SETSYMLIST (v6)


class ProtocolFlag(enum.IntFlag):
    """Steps, no-reply stages and capabilities (SMFIP_*)."""

    NONE = 0
    NOCONNECT = 0x00000001  # SMFIP_NOCONNECT
    NOHELO = 0x00000002  # SMFIP_NOHELO
    NOMAIL = 0x00000004  # SMFIP_NOMAIL
    NORCPT = 0x00000008  # SMFIP_NORCPT
    NOBODY = 0x00000010  # SMFIP_NOBODY
    NOHDRS = 0x00000020  # SMFIP_NOHDRS
    NOEOH = 0x00000040  # SMFIP_NOEOH
    NR_HDR = 0x00000080  # SMFIP_NR_HDR (also SMFIP_NOHREPL)
    NOUNKNOWN = 0x00000100  # SMFIP_NOUNKNOWN
    NODATA = 0x00000200  # SMFIP_NODATA
    SKIP = 0x00000400  # SMFIP_SKIP: MTA understands SMFIR_SKIP
    RCPT_REJ = 0x00000800  # SMFIP_RCPT_REJ: MTA also sends rejected RCPTs
    NR_CONN = 0x00001000  # SMFIP_NR_CONN
    NR_HELO = 0x00002000  # SMFIP_NR_HELO
    NR_MAIL = 0x00004000  # SMFIP_NR_MAIL
    NR_RCPT = 0x00008000  # SMFIP_NR_RCPT
    NR_DATA = 0x00010000  # SMFIP_NR_DATA
    NR_UNKN = 0x00020000  # SMFIP_NR_UNKN
    NR_EOH = 0x00040000  # SMFIP_NR_EOH
    NR_BODY = 0x00080000  # SMFIP_NR_BODY
    HDR_LEADSPC = 0x00100000  # SMFIP_HDR_LEADSPC
    MDS_256K = 0x10000000  # SMFIP_MDS_256K
    MDS_1M = 0x20000000  # SMFIP_MDS_1M


class MacroStage(enum.IntEnum):
    """Stages named in the macro lists of the OPTNEG reply (SMFIM_*).

    The order is fixed by libmilter for compatibility: EOM comes before EOH.
    """

    CONNECT = 0  # SMFIM_CONNECT
    HELO = 1  # SMFIM_HELO
    ENVFROM = 2  # SMFIM_ENVFROM
    ENVRCPT = 3  # SMFIM_ENVRCPT
    DATA = 4  # SMFIM_DATA
    EOM = 5  # SMFIM_EOM
    EOH = 6  # SMFIM_EOH


class Family(enum.Enum):
    """Address family of the SMTP client in SMFIC_CONNECT (SMFIA_*)."""

    # Members are singletons: hashing by identity agrees with equality, and
    # Enum's own __hash__ is a call into Python at every dict lookup.
    __hash__ = object.__hash__

    UNKNOWN = "U"  # SMFIA_UNKNOWN: no port, no address follow
    UNIX = "L"  # SMFIA_UNIX: port 0, socket path
    INET = "4"  # SMFIA_INET
    INET6 = "6"  # SMFIA_INET6


# What each protocol version defines; an MTA offering version N never gets
# a bit beyond these from us, and a milter reply beyond them is an error.
ACTIONS_BY_VERSION: dict[int, ActionFlag] = {
    2: ActionFlag(0x3F),
    3: ActionFlag(0x3F),
    4: ActionFlag(0x3F),
    5: ActionFlag(0x3F),
    6: ActionFlag(0x1FF),
}
_V6_PROTOCOL = ProtocolFlag(0x001FFFFF) | ProtocolFlag.MDS_256K | ProtocolFlag.MDS_1M
PROTOCOL_BY_VERSION: dict[int, ProtocolFlag] = {
    2: ProtocolFlag(0x7F),
    3: ProtocolFlag(0x17F),
    4: ProtocolFlag(0x37F),
    5: ProtocolFlag(0x37F),
    6: _V6_PROTOCOL,
}

# The step a command belongs to, and the flags that switch it off or make it
# reply-less. Commands absent from NO_REPLY_FLAG never get a reply (ABORT,
# MACRO, QUIT, QUIT_NC) or always do (OPTNEG, BODYEOB).
NO_STEP_FLAG: dict[Command, ProtocolFlag] = {
    Command.CONNECT: ProtocolFlag.NOCONNECT,
    Command.HELO: ProtocolFlag.NOHELO,
    Command.MAIL: ProtocolFlag.NOMAIL,
    Command.RCPT: ProtocolFlag.NORCPT,
    Command.BODY: ProtocolFlag.NOBODY,
    Command.HEADER: ProtocolFlag.NOHDRS,
    Command.EOH: ProtocolFlag.NOEOH,
    Command.UNKNOWN: ProtocolFlag.NOUNKNOWN,
    Command.DATA: ProtocolFlag.NODATA,
}
NO_REPLY_FLAG: dict[Command, ProtocolFlag] = {
    Command.CONNECT: ProtocolFlag.NR_CONN,
    Command.HELO: ProtocolFlag.NR_HELO,
    Command.MAIL: ProtocolFlag.NR_MAIL,
    Command.RCPT: ProtocolFlag.NR_RCPT,
    Command.DATA: ProtocolFlag.NR_DATA,
    Command.HEADER: ProtocolFlag.NR_HDR,
    Command.EOH: ProtocolFlag.NR_EOH,
    Command.BODY: ProtocolFlag.NR_BODY,
    Command.UNKNOWN: ProtocolFlag.NR_UNKN,
}
