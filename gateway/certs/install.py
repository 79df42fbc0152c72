"""Writing certificate and key files atomically, keys readable by the owner only.

A watcher (the running gateway) polls these files; writing to a temporary file in the same
folder and renaming it over the old one means it never sees half a file.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.utils.files import atomic_write

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private_key(path: Path, key: PrivateKeyTypes) -> None:
    atomic_write(path, key_pem(key), PRIVATE_MODE)


def write_public(path: Path, data: bytes) -> None:
    atomic_write(path, data, PUBLIC_MODE)


def install_pair(cert_file: Path, key_file: Path, chain_pem: bytes, key: PrivateKeyTypes) -> None:
    """Install certificate chain and key. The key goes first: a watcher that sees the new
    certificate then also finds its key (and one that sees only the new key refuses the pair
    as mismatched and keeps serving the old one until the certificate follows)."""
    write_private_key(key_file, key)
    write_public(cert_file, chain_pem)
