"""DKIM keys for the tests, and their records for the loopback DNS server."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from miltrd.plugins._dkimkeys import LoadedKey, generate_key, load_key


@dataclass
class KeyPair:
    domain: str
    selector: str
    algorithm: str
    path: Path
    key: LoadedKey

    @property
    def signing_bytes(self) -> bytes:
        return self.key.signing_bytes


def make_key(folder: Path, domain: str, selector: str, algorithm: str = "rsa-sha256") -> KeyPair:
    pem, key = generate_key(algorithm)
    path = folder / f"{domain}.{selector}.private"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return KeyPair(domain, selector, algorithm, path, key)


def weak_rsa_pem(bits: int = 1024) -> bytes:
    """A short RSA key (RFC 8301 says too short for 1024 > bits), for the other side."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def record_line(name: str, value: str) -> str:
    """A dnsmasq txt-record line; strings of at most 250 characters."""
    chunks = [value[i : i + 250] for i in range(0, len(value), 250)] or [""]
    return f"txt-record={name}," + ",".join(f'"{c}"' for c in chunks) + "\n"


def key_record(k: KeyPair) -> str:
    return record_line(f"{k.selector}._domainkey.{k.domain}", k.key.public_record)


def public_record_of_pem(pem: bytes) -> str:
    import base64

    key = serialization.load_pem_private_key(pem, password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


__all__ = ["KeyPair", "make_key", "weak_rsa_pem", "record_line", "key_record", "load_key"]
