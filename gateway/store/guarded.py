"""The running gateway's store: it starts while the store is down, and says once when it goes and comes back.

A warehouse rebooted during a Redis outage must still get its gateway: ``GuardedStore`` opens the
real store lazily (the first call, then at most once per ``RECONNECT_INTERVAL``), so a base
without ``user_auth`` serves while one with it answers 503. Every call that fails because the
machine failed (``StoreUnavailable``: Redis unreachable, a full or read-only disk) marks the
store down in its ``StoreHealth``; the first such failure is one ERROR, the ones after it are
only counted, and the first success after them is one INFO with that count — a flapping Redis
costs two lines per outage, not one per request.

A store that failed to *write* (a full disk still reads) is up again only when a write
succeeds: ``probe`` (called every second by the Auth addon while the store is down) writes one
small shared value to find out without waiting for a login — on SQLite only once the disk has
room again (``room_problem``): a small write can fit in pages already held on a full disk.

``health()`` is what ``/readyz`` and the ``gateway_store_up`` gauge read: one record per store
location in this process (whose one store every part shares: gateway.store.handle).

A disk the kernel turned read-only after an error spends the files already open: a failure
that says so (``StoreUnavailable.reopen``) closes the store, letting go of its files so the disk
can be checked and mounted again, and the next attempt opens it afresh from its path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from gateway.store.base import Store, StoreError, StoreUnavailable

logger = logging.getLogger("gateway.store")

RECONNECT_INTERVAL = 1.0  # between attempts to open a store that was unreachable
PROBE_INTERVAL = 1.0  # how often a store that is down is asked whether it is back
# Client answer while the store is down: how soon to try again (Retry-After).
RETRY_AFTER = 5
PROBE_NAME = "store-probe"

# The store's methods that write: a store that failed to write is up only once one of them succeeds.
WRITES = frozenset({
    "put_group", "remove_group", "add_user", "put_user", "remove_user", "set_credential", "add_failure",
    "clear_failures", "reserve", "release", "settle_failure", "claim", "create_session", "delete_session",
    "purge_sessions", "try_lock", "unlock", "put_shared", "delete_shared", "add_strikes", "lift_short_ban",
})


@dataclass
class StoreHealth:
    where: str
    up: bool = True
    problem: str = ""
    down_since: float = 0.0
    refused: int = 0  # calls that failed since it went down
    write_failed: bool = False  # went down on a write: only a write proves it back

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def failed(self, error: StoreUnavailable, writing: bool) -> None:
        with self._lock:
            self.refused += 1
            self.problem = str(error)
            self.write_failed = self.write_failed or writing
            if not self.up:
                return
            self.up, self.down_since, self.refused = False, time.time(), 1
        logger.error("store down: %s; user_auth bases answer 503 until it is back", error,
                     extra={"event": "store-down", "store": self.where})

    def succeeded(self, writing: bool) -> None:
        if self.up or (self.write_failed and not writing):
            return
        with self._lock:
            if self.up:
                return
            self.up, self.write_failed, self.problem = True, False, ""
            seconds, refused = time.time() - self.down_since, self.refused
        logger.info("store back: %s answers again after %.1f s; %d store call(s) failed meanwhile",
                    self.where, seconds, refused, extra={"event": "store-up", "store": self.where})


_health: dict[str, StoreHealth] = {}
_health_lock = threading.Lock()


def health_of(where: str) -> StoreHealth:
    with _health_lock:
        return _health.setdefault(where, StoreHealth(where))


def forget(where: str) -> None:
    """A store this process no longer uses (a reload moved it elsewhere): its outage is no
    longer this process's, for /readyz or the gauge."""
    with _health_lock:
        _health.pop(where, None)


def health() -> list[StoreHealth]:
    with _health_lock:
        return list(_health.values())


def problems() -> list[str]:
    """What /readyz names: one line per store of this process that is down."""
    return [f"{h.where}: {h.problem}" for h in health() if not h.up]


class GuardedStore:
    """A ``Store`` that may be opened later, and reports its health. ``opener`` opens the real
    store or raises: ``StoreUnavailable`` is waited out, any other ``StoreError`` (a wrong key
    file, a damaged database) is for the operator and raised from the first ``connect``."""

    def __init__(self, where: str, opener: Callable[[], Store]) -> None:
        self.where = where
        self._opener = opener
        self._inner: Store | None = None
        self._next_attempt = 0.0
        self._open_lock = threading.Lock()
        self._retired = False
        self.health = health_of(where)

    @property
    def connected(self) -> bool:
        return self._inner is not None

    def connect(self) -> None:
        """Open now if possible; a store that cannot be reached is marked down, not raised."""
        try:
            self._open()
        except StoreUnavailable as e:
            self.health.failed(e, writing=False)

    def try_connect(self) -> str | None:
        """Open now if possible; why not otherwise, with nothing said or marked (a reload asking)."""
        try:
            inner = self._opener()
        except StoreUnavailable as e:
            return str(e)
        with self._open_lock:
            self._inner = inner
        return None

    def _open(self) -> Store:
        inner = self._inner
        if inner is not None:
            return inner
        with self._open_lock:
            if self._inner is not None:
                return self._inner
            if self._retired:
                # A call still in flight from before a reload changed the store settings: never
                # reopened (that would leak a connection), refused like any store failure.
                raise StoreError(f"store {self.where} was closed by a reload; try again")
            now = time.monotonic()
            if now < self._next_attempt:
                raise StoreUnavailable(self.health.problem or f"store {self.where} is not connected yet")
            self._next_attempt = now + RECONNECT_INTERVAL
            self._inner = self._opener()
            self.health.succeeded(writing=False)
            return self._inner

    def probe(self) -> bool:
        """One call that tells whether the store is back (a write when a write failed)."""
        try:
            if self.health.write_failed:
                room_problem = getattr(self._inner, "room_problem", None)
                if room_problem is not None and room_problem():
                    return False
                self._call("put_shared", (f"{PROBE_NAME}:{os.getpid()}", str(time.time())), {"ttl": 60.0})
            else:
                self._call("version", (), {})
        except StoreUnavailable:
            return False
        return True

    def version(self) -> int:
        """The change marker, read on every request of a Basic-auth base: straight from the open
        store while it is up; any other case (not open yet, down, failing now) takes ``_call``,
        which opens, reports and counts as for every other call."""
        inner = self._inner
        if inner is not None and self.health.up:
            try:
                return inner.version()
            except StoreUnavailable:
                pass
        return self._call("version", (), {})  # type: ignore[no-any-return]

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        writing = name in WRITES
        inner: Store | None = None
        try:
            inner = self._open()
            result = getattr(inner, name)(*args, **kwargs)
        except StoreUnavailable as e:
            self.health.failed(e, writing)
            if e.reopen and inner is not None:
                self._drop(inner)
            raise
        self.health.succeeded(writing)
        return result

    def _drop(self, inner: Store) -> None:
        """Close a store whose files are spent (a disk turned read-only by the kernel): its files
        are released, so the disk can be checked and mounted again, and the next attempt (at most
        one per RECONNECT_INTERVAL) opens it afresh from its path."""
        with self._open_lock:
            if self._inner is not inner:
                return  # another thread has dropped it already
            self._inner = None
            self._next_attempt = time.monotonic() + RECONNECT_INTERVAL
        inner.close()

    def close(self, for_good: bool = False) -> None:
        """Close the connection; the next call opens it again, unless ``for_good``."""
        with self._open_lock:
            self._retired = self._retired or for_good
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or (self._inner is not None and not hasattr(self._inner, name)):
            raise AttributeError(name)  # e.g. SQLite's atomically() on a Redis store

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, args, kwargs)

        call.__name__ = name
        if self._inner is not None:
            self.__dict__[name] = call  # found directly next time: version() is read on every request
        return call
