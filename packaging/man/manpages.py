"""Write the man pages miltrd(8) and miltrd.toml(5) from their sources.

miltrd(8) is made from the argument parser that ``miltrd --help`` prints,
miltrd.toml(5) from the commented sample config etc/miltrd.toml, so neither
can drift from what the program does. Run from the source tree:

    python3 packaging/man/manpages.py OUTDIR

(the package builds call it; the output is roff for man(7)).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from miltrd import __version__  # noqa: E402
from miltrd.cli import build_parser, commands  # noqa: E402

DATE = "2026-11-22"


def roff(text: str) -> str:
    """Escape text for roff: backslashes, and lines starting with a control character."""
    lines = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def literal(text: str) -> str:
    return ".nf\n" + roff(text.rstrip("\n")) + "\n.fi\n"


def head(name: str, section: int, title: str) -> str:
    return f'.TH {name.upper()} {section} "{DATE}" "miltrd {__version__}" "{title}"\n'


def _helps(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, str]:
    """Each command's one-line help by its words ("dkim genkey")."""
    out: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                words = f"{prefix}{choice.dest}"
                out[words] = choice.help or ""
                out.update(_helps(action.choices[choice.dest], words + " "))
    return out


def miltrd_8() -> str:
    os.environ["COLUMNS"] = "80"  # argparse wraps --help to the terminal: make it fixed
    parser = build_parser()
    leaves = commands(parser)  # "replay", "dkim genkey", ...
    helps = _helps(parser)
    out = [head("miltrd", 8, "System Manager's Manual")]
    out.append(".SH NAME\nmiltrd \\- configuration\\-driven mail filter (milter) daemon\n")
    out.append(".SH SYNOPSIS\n")
    for p in leaves.values():
        out.append(literal(p.format_usage().removeprefix("usage: ")))
    out.append(".SH DESCRIPTION\n")
    out.append(
        roff(
            "miltrd is a mail filter for Postfix and Sendmail: the MTA hands it every SMTP "
            "transaction phase by phase over the milter protocol, and miltrd runs the chain "
            "of plugins listed in its configuration file, miltrd.toml(5), answering "
            "continue, accept, reject, tempfail or discard and applying header, recipient "
            "and body changes at the end of the message."
        )
        + "\n"
    )
    out.append(".SH COMMANDS\n")
    for name, p in leaves.items():
        out.append(f".SS {roff(name)}\n{roff(helps.get(name, ''))}\n")
        out.append(literal(p.format_help().removeprefix("usage: ")))
    out.append(
        ".SH SIGNALS\n"
        ".TP\n.B SIGHUP\nRe\\-read and validate the configuration; new connections use the new "
        "chain. A broken file is logged and the old chain keeps running.\n"
        ".TP\n.B SIGTERM\nStop accepting, let open sessions finish within "
        "daemon.shutdown_timeout, remove the unix sockets, exit.\n"
    )
    out.append(
        ".SH ENVIRONMENT\n.TP\n.B MILTRD_CONFIG\nThe configuration file when \\-c is not given.\n"
        ".TP\n.B NOTIFY_SOCKET\nSet by systemd: miltrd sends READY=1, RELOADING=1 and STOPPING=1.\n"
        ".TP\n.B LISTEN_FDS\nSet by systemd socket activation: the passed sockets are "
        "used instead of daemon.listen.\n"
    )
    out.append(
        ".SH FILES\n.TP\n.I /etc/mail/miltrd.toml\nThe configuration, see miltrd.toml(5).\n"
        ".TP\n.I /var/spool/postfix/miltrd/miltrd.sock\nThe unix socket (of miltrd.socket, "
        "and for daemon.listen), inside Postfix's chroot: miltrd:miltrd mode 0660 in a "
        "directory miltrd:miltrd 0750. The MTA's user joins group miltrd "
        "(usermod \\-aG miltrd postfix); Sendmail, running as root, needs no group.\n"
        ".TP\n.I /var/spool/miltrd\nArchives and quarantined mail written by the plugins.\n"
    )
    out.append(
        ".SH SEE ALSO\nmiltrd.toml(5), postconf(5), sendmail(8), systemctl(1), "
        "/usr/share/doc/miltrd/README.md.gz\n"
    )
    return "".join(out)


def miltrd_toml_5() -> str:
    sample = (ROOT / "etc" / "miltrd.toml").read_text()
    out = [head("miltrd.toml", 5, "File Formats Manual")]
    out.append(".SH NAME\nmiltrd.toml \\- configuration of the miltrd mail filter\n")
    out.append(".SH SYNOPSIS\n.I /etc/mail/miltrd.toml\n")
    out.append(
        ".SH DESCRIPTION\n"
        + roff(
            "The configuration of miltrd(8), in TOML. Every key the program knows is shown "
            "below in the annotated sample configuration that the package installs, with "
            "its default or an example value and what it means. Check a file with "
            "miltrd check -c FILE: each problem is reported with the file, the line and the "
            "key."
        )
        + "\n"
    )
    out.append(".SH SAMPLE CONFIGURATION\n")
    out.append(literal(sample))
    out.append(".SH SEE ALSO\nmiltrd(8), /usr/share/doc/miltrd/README.md.gz\n")
    return "".join(out)


def main() -> int:
    outdir = Path(sys.argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "miltrd.8").write_text(miltrd_8())
    (outdir / "miltrd.toml.5").write_text(miltrd_toml_5())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
