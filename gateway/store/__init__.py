"""The gateway's shared state (users, groups, failed logins, sessions) behind the ``Store`` protocol."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.store.base import (
    CREDENTIAL_KINDS, ROLES, Credential, DuplicateError, Group, NotFoundError, Place, Principal,
    Reservation, SessionRecord, Store, StoreError, StoreUnavailable, User,
)
from gateway.store.guarded import GuardedStore
from gateway.store.sqlite import DB_NAME, SqliteStore
from gateway.config import StoreSettings
from gateway.store.keys import SECRET_FILE, load_or_create_secret, secret_fingerprint

if TYPE_CHECKING:
    from gateway.store.redis import RedisStore

__all__ = [
    "CREDENTIAL_KINDS", "ROLES", "Credential", "DuplicateError", "Group", "NotFoundError", "Place", "Principal", "Reservation",
    "SessionRecord", "Store", "StoreError", "StoreUnavailable", "User", "SqliteStore", "GuardedStore", "open_store",
    "open_for_gateway",
]


def open_store(state_dir: Path, backend: str = "sqlite", redis_url: str | None = None, *,
               settings: StoreSettings | None = None, create: bool = True) -> Store:
    """The store named by the configuration's ``store`` section (``settings``, or its two
    oldest keys); opened now, or StoreError with the reason. ``create``: False to open only an
    SQLite database that exists."""
    if settings is None:
        settings = StoreSettings(backend=backend, redis_url=redis_url)
    if settings.backend == "sqlite":
        return SqliteStore(Path(state_dir) / DB_NAME, create=create)
    if settings.backend == "redis":
        return _open_redis(Path(state_dir), settings)
    raise StoreError(f"store backend {settings.backend!r} is unknown; use store.backend: sqlite or redis")


def open_for_gateway(state_dir: Path, settings: StoreSettings, connect: bool = True) -> GuardedStore:
    """The running gateway's store: one that cannot be reached now is opened when it can
    (gateway.store.guarded); a damaged database or a wrong key file is raised at once. One per
    process and configuration: gateway.store.handle. ``connect``: False to leave the first
    attempt to the caller."""
    if settings.backend == "sqlite":
        where = str(Path(state_dir) / DB_NAME)
    else:
        where = _redis_where(settings)
    opened = False

    def opener() -> Store:
        # Opened again after a disk fault: the database must still be there, never made anew.
        nonlocal opened
        inner = open_store(state_dir, settings=settings, create=not opened)
        opened = True
        return inner

    store = GuardedStore(where, opener)
    if connect:
        store.connect()
    return store


def _redis_where(settings: StoreSettings) -> str:
    if settings.sentinels:
        return f"sentinel {settings.sentinel_master} via {', '.join(settings.sentinels)}"
    # Imported here to delay a heavy optional import: redis-py is only needed by those who use Redis.
    from gateway.store.redis import safe_location
    return safe_location(settings.redis_url or "")


def _open_redis(state_dir: Path, settings: StoreSettings) -> Store:
    """The Redis store, once the state folder's HMAC key is known to be the other machines' key.

    Every machine computes the keyed index of passwords and barcodes with its own key file, so a
    machine with another key would not find users the others made, and would let a secret in use
    be set twice. Redis holds only the key's fingerprint, published by the first machine.
    """
    if not settings.redis_url and not settings.sentinels:
        raise StoreError("store.redis_url is required when store.backend is redis, e.g. redis://127.0.0.1:6379/0")
    # Imported here to delay a heavy optional import: redis-py is only needed by those who use Redis.
    from gateway.store.redis import RedisStore

    store = RedisStore.from_settings(settings)
    try:
        _require_shared_key(state_dir, store)
    except BaseException:
        store.close()
        raise
    return store


def _require_shared_key(state_dir: Path, store: RedisStore) -> None:
    mine = secret_fingerprint(load_or_create_secret(state_dir))
    shared = store.offer_key_fingerprint(mine)
    if not hmac.compare_digest(mine, shared):
        raise StoreError(
            f"{state_dir / SECRET_FILE} differs from the key the other gateways sharing {store.where} use; "
            f"copy {SECRET_FILE} from a machine already using this Redis into {state_dir} (it must be the "
            "same file on every machine) and start again")
