"""The gateway's shared state (users, groups, failed logins, sessions) behind the ``Store`` protocol."""

from __future__ import annotations

from pathlib import Path

from gateway.store.base import (
    CREDENTIAL_KINDS, ROLES, Credential, DuplicateError, Group, NotFoundError, Principal,
    SessionRecord, Store, StoreError, User,
)
from gateway.store.sqlite import DB_NAME, SqliteStore

__all__ = [
    "CREDENTIAL_KINDS", "ROLES", "Credential", "DuplicateError", "Group", "NotFoundError", "Principal",
    "SessionRecord", "Store", "StoreError", "User", "SqliteStore", "open_store",
]


def open_store(state_dir: Path, backend: str = "sqlite", redis_url: str | None = None) -> Store:
    """The store named by the configuration's ``store`` section."""
    if backend == "sqlite":
        return SqliteStore(Path(state_dir) / DB_NAME)
    raise StoreError(f"store backend {backend!r} is not available in this version; use store.backend: sqlite")
