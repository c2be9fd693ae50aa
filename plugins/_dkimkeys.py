"""DKIM signing keys: read and check a key file, make a new key pair.

Key files are what ``opendkim-genkey`` and ``miltrd dkim genkey`` write:
RSA keys in PEM (PKCS#1 or PKCS#8), Ed25519 keys in PEM (PKCS#8, as
OpenSSL writes them) or as dkimpy's base64 seed. RFC 8301 section 3.2:
RSA signing keys have at least 1024 bits; miltrd asks for 2048 (the
RFC's SHOULD). RFC 8463: Ed25519 public keys are published raw (32
octets, base64) with ``k=ed25519``.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = [
    "ALGORITHMS",
    "KeyError_",
    "LoadedKey",
    "check_key_file",
    "load_key",
    "generate_key",
    "dns_record",
    "MIN_RSA_BITS",
]

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
MIN_RSA_BITS = 2048


class KeyError_(Exception):
    """A key file that cannot be used; the message says why, with the path."""


@dataclass(frozen=True)
class LoadedKey:
    """A private key ready for dkimpy: PEM for RSA, the base64 seed for Ed25519."""

    algorithm: str
    signing_bytes: bytes
    public_record: str  # the TXT record's value: v=DKIM1; k=...; p=...
    bits: int


def _parse(data: bytes, algorithm: str, path: str) -> LoadedKey:
    if algorithm == "ed25519-sha256" and b"-----BEGIN" not in data:
        try:
            seed = base64.b64decode(data.strip(), validate=True)
        except binascii.Error:
            raise KeyError_(f"{path}: not an Ed25519 key (base64 seed or PEM)") from None
        if len(seed) != 32:
            raise KeyError_(f"{path}: an Ed25519 seed has 32 octets, this one {len(seed)}")
        key: object = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    else:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyError_(f"{path}: not a PEM private key without a password ({exc})") from None
    if algorithm == "rsa-sha256":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyError_(
                f"{path}: algorithm is rsa-sha256 but the file holds another kind of key"
            )
        if key.key_size < MIN_RSA_BITS:
            raise KeyError_(
                f"{path}: RSA key has {key.key_size} bits; use {MIN_RSA_BITS} or more (RFC 8301)"
            )
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        record = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
        return LoadedKey(algorithm, pem, record, key.key_size)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyError_(
            f"{path}: algorithm is ed25519-sha256 but the file holds another kind of key"
        )
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    raw_public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    record = f"v=DKIM1; k=ed25519; p={base64.b64encode(raw_public).decode()}"
    return LoadedKey(algorithm, base64.b64encode(seed), record, 256)


def load_key(path: str, algorithm: str) -> LoadedKey:
    """Read and parse a key file; KeyError_ saying why it cannot be used."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyError_(f"{path}: cannot read: {exc.strerror or exc}") from None
    return _parse(data, algorithm, path)


def _readable_by(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def check_key_file(path: str, algorithm: str, user: str | None = None) -> list[str]:
    """What is wrong with a key file for signing as ``user`` (default: the
    current user): missing, not a regular file, world-readable, not
    readable by the user, not a key of ``algorithm``. [] when it is fine."""
    problems: list[str] = []
    try:
        st = os.stat(path)
    except OSError as exc:
        return [f"{path}: {exc.strerror or exc}"]
    if not stat.S_ISREG(st.st_mode):
        return [f"{path}: not a regular file"]
    if st.st_mode & stat.S_IROTH:
        problems.append(f"{path}: readable by every user (mode {stat.S_IMODE(st.st_mode):04o})")
    if user is not None:
        import grp
        import pwd

        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            problems.append(f"{path}: user {user!r} does not exist")
        else:
            gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
            if not _readable_by(st, pw.pw_uid, gids):
                problems.append(f"{path}: not readable by user {user}")
    try:
        load_key(path, algorithm)
    except KeyError_ as exc:
        problems.append(str(exc))
    return problems


def generate_key(algorithm: str, bits: int = MIN_RSA_BITS) -> tuple[bytes, LoadedKey]:
    """A new key pair: (the private key file's bytes (PEM), the key)."""
    if algorithm == "rsa-sha256":
        if bits < MIN_RSA_BITS:
            raise KeyError_(f"RSA keys have at least {MIN_RSA_BITS} bits")
        key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = rsa.generate_private_key(
            public_exponent=65537, key_size=bits
        )
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    elif algorithm == "ed25519-sha256":
        key = ed25519.Ed25519PrivateKey.generate()
        fmt = serialization.PrivateFormat.PKCS8
    else:
        raise KeyError_(f"unknown algorithm {algorithm!r} (rsa-sha256, ed25519-sha256)")
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    return pem, _parse(pem, algorithm, "<new key>")


def dns_record(selector: str, domain: str, key: LoadedKey) -> str:
    """The TXT record in zone-file syntax, split into strings of at most
    255 octets (RFC 1035 3.3.14), as opendkim-genkey prints it."""
    value = key.public_record
    chunks = [value[i : i + 250] for i in range(0, len(value), 250)]
    quoted = "\n\t  ".join(f'"{c}"' for c in chunks)
    return (
        f"{selector}._domainkey.{domain}. IN TXT ( {quoted} )"
        f"  ; ----- DKIM key {selector} for {domain}"
    )
