"""``miltrd pymilter [-c FILE] [--log-level L] PROGRAM.py [ARGS...]`` (or ``-m MODULE``).

Runs a pymilter program unchanged: in this process only, ``import Milter``
and ``import milter`` give miltrd's compatibility layer, so the program's
``Milter.runmilter(...)`` serves it on miltrd's daemon. ``-c`` takes the
daemon settings (limits, logging, user, metrics) from a miltrd config
file; the socket is the one the program passes to ``runmilter``.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from ..config import LogLevel

__all__ = ["pymilter_main", "USAGE"]

USAGE = "usage: miltrd pymilter [-c FILE] [--log-level LEVEL] (PROGRAM.py | -m MODULE) [ARGS...]"

# Written out rather than made by argparse: everything after the program is
# the program's own, options that look like miltrd's included.
HELP = f"""{USAGE}

Run a pymilter program unchanged on miltrd's engine: in this process only,
"import Milter" and "import milter" give miltrd's compatibility layer, so
the program's Milter.runmilter(...) serves on miltrd's daemon. It listens
on the socket the program passes to runmilter.

options:
  -h, --help            show this help message and exit
  -c FILE, --config FILE
                        the daemon settings (limits, logging, user, metrics)
                        from a miltrd config file (default: miltrd's defaults)
  --log-level LEVEL     debug, info, warning or error (default: the config's,
                        else info)
  -m MODULE             run MODULE as the program, as python3 -m does; what
                        follows is its arguments
  PROGRAM.py [ARGS...]  the program and its own arguments

exit status:
  the program's own; 2 a command-line mistake (no program, a bad --log-level)
"""


def pymilter_main(argv: Sequence[str]) -> int:
    args = list(argv)
    config: str | None = None
    level: str | None = None
    module: str | None = None
    while args:
        head = args[0]
        if head in ("-h", "--help"):
            print(HELP, end="")
            return 0
        if head in ("-c", "--config", "--log-level", "-m") and len(args) >= 2:
            value = args[1]
            del args[:2]
            if head == "-m":
                module = value
                break
            if head == "--log-level":
                level = value
            else:
                config = value
            continue
        break
    if module is None and not args:
        print(USAGE, file=sys.stderr)
        return 2
    if level is not None and level not in ("debug", "info", "warning", "error"):
        print(
            f"miltrd pymilter: --log-level {level}: debug, info, warning or error", file=sys.stderr
        )
        return 2
    from ..pymilter import finder, serve

    serve.options.config_path = config
    serve.options.log_level = cast("LogLevel | None", level)
    finder.install()
    try:
        if module is not None:
            sys.argv = [module, *args]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            program = args[0]
            if not os.path.isfile(program):
                print(f"miltrd pymilter: {program}: no such file", file=sys.stderr)
                return 2
            sys.argv = list(args)
            sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
            runpy.run_path(program, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0
