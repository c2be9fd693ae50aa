"""The exit statuses of the ``miltrd`` command, in one place for the code
and the ``--help`` text."""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_PIPE",
    "REPLAY_EXITS",
    "EXIT_STATUSES",
    "REPLAY_EXIT_STATUSES",
    "GENKEY_EXIT_STATUSES",
]

EXIT_OK = 0
EXIT_ERROR = 1  # config errors, cannot start, cannot reach the milter
EXIT_USAGE = 2  # a command-line mistake (argparse uses 2 as well)
EXIT_PIPE = 141  # stdout's reader went away: 128 + SIGPIPE, as a shell reports it
# replay's verdict: 4 and 5 echo the SMTP reply classes 4xx and 5xx.
REPLAY_EXITS = {"accept": 0, "tempfail": 4, "reject": 5, "discard": 6}

EXIT_STATUSES = """exit status:
  0    done
  1    the configuration has errors, or miltrd could not start or reach the milter
  2    a command-line mistake (unknown option, unreadable file, malformed --connect)
  141  standard output was closed by its reader (e.g. piped into head)
  replay also exits 4 (tempfail), 5 (reject) or 6 (discard); see miltrd replay --help"""

REPLAY_EXIT_STATUSES = """exit status (the verdict the MTA would act on):
  0    accept (delivered, changed or not)
  4    tempfail (4xx: the client should try again later)
  5    reject (5xx)
  6    discard (accepted and silently dropped)
  1    the configuration has errors, or the milter given by --connect could not be reached
  2    a command-line mistake (missing --rcpt, an --rcpt or --from that is not an
       address, unreadable message file, --output in a directory that does not
       exist, malformed --connect)"""

GENKEY_EXIT_STATUSES = """exit status:
  0    the key pair was written and the record printed
  1    SELECTOR.private or SELECTOR.txt exists already, or a file could not be written
  2    a command-line mistake (not a domain or selector, a key size refused,
       -D not an existing directory)"""
