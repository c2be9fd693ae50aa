"""``miltrd check``: validate, then show the chain and what it negotiates."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import sys

from ..api import DECIDING_PHASES, Phase
from ..chain import Runtime, build_runtime
from ..config import ConfigError, Problem, load
from ..server.translate import STEP_FLAGS, request_for

__all__ = ["check", "load_runtime", "describe_runtime"]


def load_runtime(path: str) -> Runtime:
    return build_runtime(load(path))


def _phases(phases: Phase) -> str:
    names = [p.name.lower() for p in Phase if p.name and p & phases and p is not Phase.NONE]
    return " ".join(names) or "-"


def describe_runtime(runtime: Runtime) -> str:
    config = runtime.config
    lines = [f"{config.path}: OK"]
    lines.append("listen: " + ", ".join(spec.text for spec in config.daemon.listen))
    workers = config.daemon.workers
    how = " (auto: one per usable core)" if workers.auto else ""
    lines.append(f"workers: {workers}{how}")
    lines.append("chain:")
    if not runtime.plugins:
        lines.append("  (no plugins: every message is accepted unchanged)")
    for i, p in enumerate(runtime.plugins, 1):
        actions = " ".join(a.name.lower() for a in type(p.actions) if a.name and a & p.actions)
        lines.append(
            f"  {i}. {p.name} [{p.entry.mode}] hooks: {_phases(p.implemented)}; "
            f"decides: {_phases(p.deciding & DECIDING_PHASES)}; changes: {actions or '-'}; "
            f"on_error={p.on_error} timeout={p.timeout:g}s"
        )
        if p.entry.observe_why:
            lines.append(f"     observe, not enforce: {p.entry.observe_why}")
        if p.entry.when is not None:
            lines.append(f"     when: {p.entry.when.describe()}")
        lines.extend(f"     {line}" for line in p.plugin.describe())
    req = request_for(runtime.declared)
    steps = []
    for phase, (off, no_reply) in STEP_FLAGS.items():
        name = (phase.name or "").lower()
        if off & req.protocol:
            steps.append(f"{name}=off")
        elif no_reply & req.protocol:
            steps.append(f"{name}=no-reply")
        else:
            steps.append(f"{name}=reply")
    steps.append("eom=reply")
    lines.append("protocol steps: " + " ".join(steps))
    if "SKIP" in repr(req.protocol):
        lines.append("  body: skipped (SMFIR_SKIP) from the first chunk no plugin wants")
    actions = " ".join(a.name or "" for a in type(req.actions) if a & req.actions and a.name)
    lines.append(f"actions: {actions or 'none'}")
    lines.append("macros:")
    for stage, names in req.macros.items():
        lines.append(f"  {stage.name.lower()}: {' '.join(names)}")
    return "\n".join(lines)


# The MTAs' stock milter timeouts (seconds) a reply must beat: Sendmail's
# default T=R:10s for each reply (the X option's timeouts in Sendmail's
# op.me), and for the whole end of message Postfix's milter_content_timeout
# (300s) and Sendmail's E:5m. Postfix's milter_command_timeout (30s) is
# above R:10s, so staying below R is safe with both.
SENDMAIL_REPLY = 10.0
END_OF_MESSAGE = 300.0


def timeout_warnings(runtime: Runtime) -> list[str]:
    """The phases whose plugins' timeouts, added up, could outlast the MTA:
    a phase's reply waits for every plugin hooked on it, one after another."""
    warnings = []
    for phase in Phase:
        if not phase.name or phase in (Phase.NONE, Phase.ABORT, Phase.CLOSE):
            continue
        hooked = [p for p in runtime.plugins if phase & p.implemented]
        total = sum(p.timeout for p in hooked)
        limit, what = (
            (END_OF_MESSAGE, "Postfix's milter_content_timeout (300s) and Sendmail's E:5m")
            if phase is Phase.EOM
            else (SENDMAIL_REPLY, "Sendmail's default R:10s")
        )
        if total >= limit:
            names = " + ".join(f"{p.name} {p.timeout:g}s" for p in hooked)
            warnings.append(
                f"{runtime.config.path}: {phase.name.lower()}: the plugins' timeouts add up to "
                f"{total:g}s ({names}), not below {what}: the MTA may give up first"
            )
    return warnings


def _user_may(st: os.stat_result, user: str, owner_bits: int) -> bool:
    """Whether ``user`` has ``owner_bits`` (S_IRUSR, S_IWUSR | S_IXUSR...)
    on a file with status ``st``, through its owner, group or other bits.
    An unknown user passes (the [daemon] user check reports it), as root does."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return True
    if pw.pw_uid == 0:
        return True
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    if st.st_uid == pw.pw_uid:
        bits = owner_bits
    elif st.st_gid in gids:
        bits = owner_bits >> 3
    else:
        bits = owner_bits >> 6
    return st.st_mode & bits == bits


def _unreadable(path: str, user: str | None) -> str:
    """Why ``user`` (default: this process) cannot read ``path``; "" if it can."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if user is None:
        return "" if os.access(path, os.R_OK) else f"{path}: not readable"
    if _user_may(st, user, stat.S_IRUSR):
        return ""
    return f"{path}: not readable by user {user} (mode {stat.S_IMODE(st.st_mode):04o})"


def _unwritable(path: str, user: str | None) -> str:
    """Why ``user`` (default: this process) cannot make or write into the
    directory ``path``; "" if it can. A missing directory is judged by its
    nearest existing parent, where the plugin will create it."""
    probe = os.path.abspath(path)
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{path}: {probe} is not a directory"
    if user is None:
        ok = os.access(probe, os.W_OK | os.X_OK)
        return "" if ok else f"{path}: {probe} is not writable"
    st = os.stat(probe)
    if _user_may(st, user, stat.S_IWUSR | stat.S_IXUSR):
        return ""
    mode = stat.S_IMODE(st.st_mode)
    return f"{path}: {probe} is not writable by user {user} (mode {mode:04o})"


def file_problems(runtime: Runtime) -> list[Problem]:
    """Files plugins read at run time that the daemon's user cannot read,
    and directories they write below that it cannot write."""
    problems = []
    user = runtime.config.daemon.user
    for p in runtime.plugins:
        for key, path in p.plugin.readable_files().items():
            why = _unreadable(path, user)
            if why:
                problems.append(runtime.config.problem(f"plugins.{p.name}.{key}", why))
        for key, path in p.plugin.writable_dirs().items():
            why = _unwritable(path, user)
            if why:
                problems.append(runtime.config.problem(f"plugins.{p.name}.{key}", why))
    return problems


def check(path: str) -> int:
    try:
        runtime = load_runtime(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    for warning in runtime.config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for text in timeout_warnings(runtime):
        print(f"warning: {text}", file=sys.stderr)
    problems = file_problems(runtime)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    print(describe_runtime(runtime))
    return 0
