"""The ``miltrd`` command: run, check, replay, stats, pymilter, version.

Exit statuses (also in ``miltrd --help``): 0 done (``replay``: accepted),
1 the configuration has errors or the daemon/milter could not be reached,
2 a command-line mistake (unknown option, unreadable message file, a
malformed ``--connect``), 141 the reader of standard output went away
before all was written (a long ``miltrd stats`` piped into ``head -1``:
128 + SIGPIPE, as for a C program).
``replay`` also says its verdict: 4 tempfail, 5 reject, 6 discard.
``pymilter`` exits with the program's own status.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..config import DEFAULT_PATH
from .exits import (
    EXIT_PIPE,
    EXIT_STATUSES,
    EXIT_USAGE,
    GENKEY_EXIT_STATUSES,
    REPLAY_EXIT_STATUSES,
)

__all__ = ["main", "build_parser", "commands"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr naming the command it
    belongs to (``miltrd check: unrecognized arguments: --bogus``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by its words ("replay", "dkim genkey"),
    leaves only: what the man page's synopsis lists."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = commands(sub)
                out.update({f"{name} {k}": v for k, v in nested.items()} if nested else {name: sub})
    return out


def _config_default() -> str:
    return os.environ.get("MILTRD_CONFIG", DEFAULT_PATH)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="miltrd",
        description="Configuration-driven mail filter (milter) daemon.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c",
            "--config",
            default=None,
            metavar="FILE",
            help=f"config file (default: $MILTRD_CONFIG or {DEFAULT_PATH})",
        )

    run = sub.add_parser("run", help="run the daemon in the foreground")
    config_arg(run)
    check = sub.add_parser("check", help="validate the config and show what it negotiates")
    config_arg(check)
    replay = sub.add_parser(
        "replay",
        help="run one message through the chain (or a milter)",
        # argparse shows a repeatable option once: say it repeats.
        usage="miltrd replay [-h] [-c FILE] --rcpt ADDRESS [--rcpt ADDRESS]...\n"
        "                     [--from ADDRESS] [--client-ip IP] [--client-name NAME]\n"
        "                     [--helo NAME] [--auth USER] [--connect SOCKET]\n"
        "                     [--output FILE] MESSAGE",
        description="Run one message through the configured chain (or a running milter) "
        "and print each plugin's verdict and change. Nothing is written, sent or "
        "archived: plugins that would write files (wiretap archives, defang "
        "quarantine) say what they would have written and where. The resulting "
        "message goes only to --output.",
        epilog=REPLAY_EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument(
        "message", metavar="MESSAGE", help="the message file (.eml), or - for standard input"
    )
    replay.add_argument(
        "--from",
        dest="sender",
        default="",
        metavar="ADDRESS",
        type=_sender,
        help="envelope sender (default: <>, a bounce)",
    )
    replay.add_argument(
        "--rcpt",
        action="append",
        required=True,
        metavar="ADDRESS",
        type=_recipient,
        help="envelope recipient (required; repeat for several)",
    )
    replay.add_argument(
        "--client-ip",
        default="127.0.0.1",
        metavar="IP",
        type=_ip_address,
        help="address of the SMTP client that sent the message (default: 127.0.0.1, "
        "this host, which [internal] networks usually count as internal, so the mail "
        "is judged as your own users'; give an outside address such as 192.0.2.1 to "
        "judge it as mail arriving from the internet)",
    )
    replay.add_argument(
        "--client-name",
        default=None,
        metavar="NAME",
        help="client host name (default: localhost for 127.x, else unknown)",
    )
    replay.add_argument(
        "--helo", default=None, metavar="NAME", help="HELO name (default: the client name)"
    )
    replay.add_argument(
        "--auth", default="", metavar="USER", help="SMTP AUTH user name (default: none)"
    )
    replay.add_argument(
        "--connect",
        default=None,
        metavar="SOCKET",
        help="talk to this running milter instead, in Sendmail's syntax "
        "(inet:PORT@HOST, unix:/path)",
    )
    replay.add_argument(
        "--output",
        default=None,
        metavar="FILE",
        help="write the resulting message here (its directory must exist)",
    )
    config_arg(replay)
    stats = sub.add_parser("stats", help="report on miltrd's summary log lines")
    stats.add_argument(
        "logfiles", nargs="+", help="log files (stderr/journal export or syslog), - for stdin"
    )
    stats.add_argument("--top", type=int, default=10, help="entries per list (default 10)")
    pym = sub.add_parser(
        "pymilter",
        help="run a pymilter program unchanged on miltrd's engine",
        usage="miltrd pymilter [-c FILE] [--log-level LEVEL] (PROGRAM.py | -m MODULE) [ARGS...]",
    )
    pym.add_argument("program", nargs=argparse.REMAINDER, help="the program and its arguments")
    dkim = sub.add_parser("dkim", help="DKIM tools (genkey)")
    dkim_sub = dkim.add_subparsers(dest="dkim_command", required=True, metavar="TOOL")
    genkey = dkim_sub.add_parser(
        "genkey",
        help="write a key pair and print the DNS TXT record (like opendkim-genkey)",
        description="Write SELECTOR.private (mode 0600) and SELECTOR.txt (the DNS "
        "record) into the directory and print the record to publish at "
        "SELECTOR._domainkey.DOMAIN. Existing files are never overwritten.",
        epilog=GENKEY_EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    genkey.add_argument("domain")
    genkey.add_argument("selector")
    genkey.add_argument(
        "--algorithm",
        "-a",
        default="rsa-sha256",
        choices=["rsa-sha256", "ed25519-sha256", "rsa", "ed25519"],
    )
    genkey.add_argument("--bits", "-b", type=int, default=2048, help="RSA key size (default 2048)")
    genkey.add_argument(
        "--directory",
        "-D",
        default=".",
        metavar="DIR",
        help="an existing directory to write the files into (default: the current one)",
    )
    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (``miltrd check | head -1``): not an error
        # to report, and stdout must not be flushed again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_PIPE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def _main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["pymilter"]:
        # The program's own options follow: argparse must not read them.
        from .pymilter import pymilter_main

        return pymilter_main(raw[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(raw)
    if extra:
        # argparse leaves a command's unknown options to the top parser,
        # whose usage is not the command's: name the command's own.
        words = " ".join(w for w in (args.command, getattr(args, "dkim_command", None)) if w)
        commands(parser)[words].error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "stats":
        from .stats import stats_command

        return stats_command(args.logfiles, args.top)
    if args.command == "dkim":
        from .dkim import genkey

        return genkey(args.domain, args.selector, args.algorithm, args.bits, args.directory)
    if args.command == "version":
        print(f"miltrd {__version__}")
        return 0
    config_path = getattr(args, "config", None) or _config_default()
    if args.command == "check":
        from .check import check

        return check(config_path)
    if args.command == "run":
        from .run import run

        return run(config_path)
    if args.command == "replay":
        from .replay import replay_command

        return replay_command(args, config_path)
    print(f"unknown command {args.command}", file=sys.stderr)
    return 2


# An address as SMTP carries it (RFC 5321 section 4.1.2): a local part and
# a domain or an address literal; no spaces, angle brackets or controls.
_ADDRESS = re.compile(r"[^\s<>@]+@(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[^\s\]]+\])")


def _recipient(text: str) -> str:
    """argparse type for --rcpt: local@domain, or Postmaster alone (RFC 5321
    section 4.1.1.3); exit 2 otherwise."""
    address = text.strip()
    address = address[1:-1] if address.startswith("<") and address.endswith(">") else address
    if _ADDRESS.fullmatch(address) or address.lower() == "postmaster":
        return address
    raise argparse.ArgumentTypeError(f"not an address: {text!r} (expected user@domain)")


def _sender(text: str) -> str:
    """argparse type for --from: an address, or "" or <> for the null sender."""
    if text.strip() in ("", "<>"):
        return ""
    address = text.strip()
    address = address[1:-1] if address.startswith("<") and address.endswith(">") else address
    if _ADDRESS.fullmatch(address):
        return address
    raise argparse.ArgumentTypeError(
        f"not an address: {text!r} (expected user@domain, or <> for the null sender)"
    )


def _ip_address(text: str) -> str:
    """argparse type for --client-ip: an IPv4 or IPv6 address, or exit 2."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None
