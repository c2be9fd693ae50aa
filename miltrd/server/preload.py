"""Load now everything serving may load later, before privileges are dropped.

Python imports many modules lazily: asyncio's default thread pool
(``concurrent.futures.thread``) on the first ``run_in_executor``, the codec
for a charset the first time a message uses it (``encodings.*``),
dnspython's record classes the first time a record type is answered.
After the drop to ``daemon.user`` those files may be unreadable (an
interpreter under /root, a virtualenv only root can read), and the first
message that needed one would tempfail although start-up logged success.

So, before the drop, every submodule of every package already imported
(the standard library's packages in use, the plugins' packages and their
libraries, miltrd itself) is imported, as are the modules listed in
``LAZY``: standard modules the serving path imports inside functions.
This costs start-up time and some memory once, only when miltrd starts as
root with ``daemon.user`` set.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import pkgutil
import sys
import time
import warnings

__all__ = ["preload", "LAZY"]

log = logging.getLogger("miltrd.server")

# Standard modules imported inside functions on the serving path.
LAZY = (
    "concurrent.futures.thread",
    "asyncio.unix_events",
    "email.policy",
    "email.generator",
    "email.headerregistry",
    "email.contentmanager",
    "email.feedparser",
    "email.parser",
    "email.iterators",
    "zipfile",
    "zlib",
    "bz2",
    "lzma",
    "binascii",
    "base64",
    "quopri",
    "uu",
    "hashlib",
    "hmac",
    "secrets",
    "tempfile",
    "shutil",
    "fcntl",
    "mailbox",
    "html.parser",
    "ipaddress",
    "socket",
    "ssl",
    "unicodedata",
    "stringprep",
    "encodings.idna",
    "traceback",
    "linecache",
    "tokenize",
)

# Never imported: programs, tests, platform code for other systems, the
# packaging tools site.py loads, and optional async backends of libraries
# (dnspython's trio and curio support would load those whole frameworks).
_SKIP = frozenset(
    {
        "__main__",
        "test",
        "tests",
        "idle_test",
        "_distutils_hack",
        "setuptools",
        "pkg_resources",
        "pip",
        "_trio_backend",
        "_curio_backend",
    }
)
_OTHER_PLATFORMS = ("_win", "win", "msvc", "_osx", "macos", "_aix")


def _skipped(name: str) -> bool:
    return any(part in _SKIP or part.startswith(_OTHER_PLATFORMS) for part in name.split("."))


def _walk(package: object, seen: set[str]) -> None:
    name = getattr(package, "__name__", "")
    if name in seen:
        return
    seen.add(name)
    try:
        infos = list(pkgutil.iter_modules(getattr(package, "__path__", []), name + "."))
    except Exception:
        return
    for info in infos:
        if _skipped(info.name):
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:  # optional dependencies, other platforms: not ours to need
            continue
        if info.ispkg:
            _walk(module, seen)


def preload() -> int:
    """Import what serving may need later; returns how many modules were loaded."""
    started = time.monotonic()
    before = len(sys.modules)
    for name in LAZY:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    packages = [
        module
        for name, module in sorted(sys.modules.items())
        if "." not in name and getattr(module, "__path__", None) is not None and not _skipped(name)
    ]
    seen: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for package in packages:
            _walk(package, seen)
    loaded = len(sys.modules) - before
    log.info(
        "loaded %d modules before dropping privileges (%.1fs)",
        loaded,
        time.monotonic() - started,
    )
    return loaded
