"""``ConfigPath``: the type of an option that names a file or directory.

A relative path in the configuration file is taken relative to the
directory that file is in (``key_file = "dkim/sel.private"`` in
``/etc/mail/miltrd.toml`` is ``/etc/mail/dkim/sel.private``), never to the
directory miltrd happened to be started from, which differs between
``miltrd check`` in a shell, ``replay`` and the service. An empty string
stays empty (an option that is off).
"""

from __future__ import annotations

import os
from typing import ClassVar

__all__ = ["ConfigPath"]


class ConfigPath(str):
    """A path option, as a ``str``. The loader makes a relative one
    absolute against the config file's directory (``resolved``); built
    with ``from_toml`` alone (no file: a test's options) it is kept as
    written."""

    toml_type: ClassVar[type] = str

    @classmethod
    def from_toml(cls, text: str) -> ConfigPath:
        """``text`` as written (no config file to resolve it against)."""
        return cls(text)

    @classmethod
    def resolved(cls, text: str, base: str) -> ConfigPath:
        """``text`` against directory ``base`` (absolute): unchanged when
        empty or absolute (``~`` is not expanded: miltrd is not a shell)."""
        if not text or os.path.isabs(text):
            return cls(text)
        return cls(os.path.normpath(os.path.join(base, text)))
