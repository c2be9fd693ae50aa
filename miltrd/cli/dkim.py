"""``miltrd dkim genkey DOMAIN SELECTOR``: a new DKIM key pair, as opendkim-genkey makes.

Writes ``SELECTOR.private`` (mode 0600; for [[plugins.dkim.keys]]
key_file) and ``SELECTOR.txt`` (the DNS record) into the directory and
prints the record to publish at ``SELECTOR._domainkey.DOMAIN``.
Exit statuses (``GENKEY_EXIT_STATUSES``): 0 written, 1 a file exists or
could not be written, 2 a command-line mistake (also a ``-D`` that is not
an existing directory); always one line on stderr.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

__all__ = ["genkey"]


def genkey(domain: str, selector: str, algorithm: str, bits: int, directory: str) -> int:
    # The key code lives with the plugin (installed as miltrd.plugins).
    keys = importlib.import_module("miltrd.plugins._dkimkeys")
    KeyError_, dns_record, generate_key = keys.KeyError_, keys.dns_record, keys.generate_key

    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", domain):
        print(f"miltrd dkim genkey: {domain!r} is not a domain name", file=sys.stderr)
        return 2
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", selector):
        print(f"miltrd dkim genkey: {selector!r} is not a selector", file=sys.stderr)
        return 2
    algorithm = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}.get(algorithm, algorithm)
    try:
        pem, key = generate_key(algorithm, bits)
    except KeyError_ as exc:
        print(f"miltrd dkim genkey: {exc}", file=sys.stderr)
        return 2
    folder = Path(directory)
    if not folder.is_dir():
        what = "not a directory" if folder.exists() else "no such directory"
        print(f"miltrd dkim genkey: -D {directory}: {what}", file=sys.stderr)
        return 2
    private, txt = folder / f"{selector}.private", folder / f"{selector}.txt"
    for path in (private, txt):
        if path.exists():
            print(f"miltrd dkim genkey: {path} exists; not overwritten", file=sys.stderr)
            return 1
    record = dns_record(selector, domain.lower(), key)
    try:
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        txt.write_text(record + "\n")
    except OSError as exc:
        where = exc.filename or private
        print(f"miltrd dkim genkey: {where}: {exc.strerror or exc}", file=sys.stderr)
        if private.exists() and not txt.exists():
            private.unlink()  # not half a pair: the next run must not find it "exists"
        return 1
    print(f"# private key: {private} (mode 0600; make it readable by miltrd's user only)")
    print(f'# config: [[plugins.dkim.keys]] domain = "{domain.lower()}" selector = "{selector}"')
    print(f'#         key_file = "{private.resolve()}" algorithm = "{algorithm}"')
    print(record)
    return 0
