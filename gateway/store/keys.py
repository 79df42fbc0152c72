"""Hashing of secrets: argon2id for verification, a keyed HMAC-SHA256 for lookup and uniqueness.

The HMAC key lives in the state folder, not in the database, so a copied database alone gives
an attacker neither the secrets nor a fast way to test guesses against the index. Machines that
share a Redis store must hold the same key file (the operator copies it); Redis holds only its
fingerprint, so that a machine with another key refuses to start instead of splitting the index.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

SECRET_FILE = "auth-hmac.key"
SECRET_BYTES = 32

_hasher = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 defaults


def load_or_create_secret(state_dir: Path) -> bytes:
    """The state folder's HMAC key, created (owner-only) on first use; safe if two processes race."""
    path = Path(state_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(SECRET_BYTES).encode("ascii"))
        # On the disk before anything is keyed with it: a disk error or power cut soon after
        # would otherwise leave an empty key file beside the passwords keyed with the lost one.
        f.flush()
        os.fsync(f.fileno())
    _sync_folder(path.parent)
    return _read_secret(path)


def _sync_folder(folder: Path) -> None:
    """The new file's name on the disk too (POSIX; Windows has no directory handle to sync)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_secret(path: Path) -> bytes:
    # Another process may have created the file a moment ago and not written it yet.
    for _ in range(50):
        text = path.read_bytes().strip()
        if len(text) == SECRET_BYTES * 2:
            try:
                return bytes.fromhex(text.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                break
        time.sleep(0.02)
    raise ValueError(f"{path} is damaged (expected {SECRET_BYTES * 2} hex digits); restore it from a backup "
                     "of the state folder, or delete it and set every password and barcode again")


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes, label: bytes) -> hmac.HMAC:
    """An HMAC already keyed and fed the label; a copy of it costs half of keying afresh, and
    cache_key runs on every authenticated request."""
    return hmac.new(secret, label, hashlib.sha256)


def _keyed_hash(secret: bytes, label: bytes, message: bytes) -> str:
    mac = _keyed(secret, label).copy()
    mac.update(message)
    return mac.hexdigest()


def credential_key(secret: bytes, value: str) -> str:
    """The unique-index key of a password or barcode (the same space for both)."""
    return _keyed_hash(secret, b"credential\x00", value.encode("utf-8"))


def cache_key(secret: bytes, login: str, value: str) -> str:
    """Key of a cached successful verification: the login is part of it, the secret never stored."""
    return _keyed_hash(secret, b"cache\x00", login.casefold().encode("utf-8") + b"\x00" + value.encode("utf-8"))


def secret_fingerprint(secret: bytes) -> str:
    """Tells whether an export, a state folder or a shared store use the same HMAC key, without revealing it."""
    return hmac.new(secret, b"fingerprint", hashlib.sha256).hexdigest()[:16]


def hash_secret(value: str) -> str:
    return _hasher.hash(value)


def verify_secret(stored_hash: str, value: str) -> bool:
    try:
        return _hasher.verify(stored_hash, value)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def is_argon2id_hash(text: str) -> bool:
    return text.startswith("$argon2id$")
