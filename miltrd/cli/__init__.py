"""The ``miltrd`` command: run, check, replay, stats, pymilter, version.

Exit statuses (also in ``miltrd --help``): 0 done (``replay``: accepted),
1 the configuration has errors or the daemon/milter could not be reached,
2 a command-line mistake (unknown option, unreadable message file, a
malformed ``--connect``), 141 the reader of standard output went away
(``miltrd check | head -1``: 128 + SIGPIPE, as for a C program).
``replay`` also says its verdict: 4 tempfail, 5 reject, 6 discard.
``pymilter`` exits with the program's own status.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from .. import __version__
from ..config import DEFAULT_PATH
from .exits import EXIT_PIPE, EXIT_STATUSES, REPLAY_EXIT_STATUSES

__all__ = ["main", "build_parser"]


def _config_default() -> str:
    return os.environ.get("MILTRD_CONFIG", DEFAULT_PATH)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
            help=f"config file (default: $MILTRD_CONFIG or {DEFAULT_PATH})",
        )

    run = sub.add_parser("run", help="run the daemon in the foreground")
    config_arg(run)
    check = sub.add_parser("check", help="validate the config and show what it negotiates")
    config_arg(check)
    replay = sub.add_parser(
        "replay",
        help="run one message through the chain (or a milter)",
        description="Run one message through the configured chain (or a running milter) "
        "and print each plugin's verdict and change. Nothing is written, sent or "
        "archived: plugins that would write files (wiretap archives, defang "
        "quarantine) say what they would have written and where. The resulting "
        "message goes only to --output.",
        epilog=REPLAY_EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("message", help="the message file (.eml), or - for standard input")
    replay.add_argument(
        "--from", dest="sender", default="", help="envelope sender (default: <>, a bounce)"
    )
    replay.add_argument(
        "--rcpt",
        action="append",
        required=True,
        help="envelope recipient (required; repeat for several)",
    )
    replay.add_argument(
        "--client-ip",
        default="127.0.0.1",
        type=_ip_address,
        help="address of the SMTP client that sent the message (default: 127.0.0.1, "
        "this host, which [internal] networks usually count as internal, so the mail "
        "is judged as your own users'; give an outside address such as 192.0.2.1 to "
        "judge it as mail arriving from the internet)",
    )
    replay.add_argument(
        "--client-name",
        default=None,
        help="client host name (default: localhost for 127.x, else unknown)",
    )
    replay.add_argument("--helo", default=None, help="HELO name (default: the client name)")
    replay.add_argument("--auth", default="", help="SMTP AUTH user name (default: none)")
    replay.add_argument(
        "--connect",
        default=None,
        help="talk to this running milter instead, in Sendmail's syntax "
        "(inet:PORT@HOST, unix:/path)",
    )
    replay.add_argument("--output", default=None, help="write the resulting message here")
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
        "genkey", help="write a key pair and print the DNS TXT record (like opendkim-genkey)"
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
    genkey.add_argument("--directory", "-D", default=".", help="where to write the files")
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
    args = build_parser().parse_args(raw)
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


def _ip_address(text: str) -> str:
    """argparse type for --client-ip: an IPv4 or IPv6 address, or exit 2."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None
