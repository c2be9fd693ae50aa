"""The Public Suffix List as the dmarc plugin reads it: Organizational Domains.

The list is read from a file the distribution keeps current, never from a
copy bundled with a library: ``/usr/share/publicsuffix/public_suffix_list.dat``
is where Debian's ``publicsuffix`` and Fedora/EL's ``publicsuffix-list``
packages put it. The rules are matched by ``publicsuffix2``, which Debian
(python3-publicsuffix2), Fedora and EPEL package as well as PyPI.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from publicsuffix2 import PublicSuffixList

SYSTEM_PSL = "/usr/share/publicsuffix/public_suffix_list.dat"
PACKAGES = "Debian's publicsuffix or Fedora/EL's publicsuffix-list package"


class SuffixListError(Exception):
    """The list file is missing, unreadable or holds no rules (the message says which)."""


@dataclass(frozen=True)
class SuffixList:
    """A loaded Public Suffix List: ``path`` it came from, ``rules`` (count)
    and ``dated`` (the file's modification day, YYYY-MM-DD)."""

    path: str
    rules: int
    dated: str
    _psl: PublicSuffixList

    def public_suffix(self, domain: str) -> str:
        """The longest matching rule's suffix of ``domain`` (lower case, no
        trailing dot); an unlisted TLD is its own suffix (the list's implicit
        ``*`` rule)."""
        return str(self._psl.get_tld(_name(domain), wildcard=True, strict=False) or "")

    def org_domain(self, domain: str) -> str:
        """RFC 7489 section 3.2: the public suffix plus one label; the domain
        itself (lower case, no trailing dot) when it is a public suffix."""
        name = _name(domain)
        labels = name.split(".")
        suffix = self.public_suffix(name)
        keep = suffix.count(".") + 2 if suffix else 1
        return name if len(labels) < keep else ".".join(labels[-keep:])

    def describe(self) -> str:
        """One line for ``miltrd check``: where the list comes from."""
        return f"public suffix list: {self.path} ({self.rules} rules, file dated {self.dated})"


def _name(domain: str) -> str:
    return domain.lower().rstrip(".")


def load(path: str) -> SuffixList:
    """Read the list at ``path`` (UTF-8, the publicsuffix.org format);
    SuffixListError saying what is wrong and, for the system path, which
    package provides it."""
    try:
        with open(path, encoding="utf-8") as source:
            lines = source.readlines()
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        hint = f": install {PACKAGES}" if path == SYSTEM_PSL else ""
        raise SuffixListError(f"{path}: no such file{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuffixListError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        psl = PublicSuffixList(lines)
    except UnicodeError as exc:
        raise SuffixListError(f"{path}: not a Public Suffix List ({exc})") from None
    if not psl.tlds:
        raise SuffixListError(f"{path}: no rules in it (not a Public Suffix List)")
    dated = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).date().isoformat()
    return SuffixList(path, len(psl.tlds), dated, psl)
