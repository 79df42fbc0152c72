"""Checking a login and secret against the stored users, with a short cache of successes.

Password-only logins find their user through the keyed-hash index, never by trying every
user's argon2 hash. A success is cached under a keyed hash of login and secret (never the
secret itself) together with the user's generation; every hit re-reads that generation from
the store, so a password change or removal — by any process — ends the cached entry at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from gateway.accounts import keys
from gateway.store.base import Principal, Store

# Enough entries for every device of a large warehouse; the oldest is dropped beyond it.
CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class Outcome:
    principal: Principal | None
    reason: str = ""  # for the log, never a secret; the client only sees a generic text
    kind: str = ""  # "password" or "barcode" when known

    @property
    def ok(self) -> bool:
        return self.principal is not None


@dataclass(frozen=True)
class _Entry:
    user_id: str
    generation: int
    kind: str
    expires: float


class Authenticator:
    def __init__(self, store: Store, secret: bytes, cache_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.secret = secret
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.argon2_runs = 0  # for tests and metrics: the cost the cache saves
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, login: str, secret: str, allow_barcode: bool) -> Principal | None:
        """The user for a recently verified login, or None; cheap enough for the event loop."""
        if self.cache_seconds <= 0:
            return None
        key = keys.cache_key(self.secret, login, secret)
        with self._lock:
            entry = self._cache.get(key)
        if entry is None:
            return None
        if entry.expires <= self.clock() or (entry.kind == "barcode" and not allow_barcode):
            self._forget(key)
            return None
        principal = self.store.principal(entry.user_id)
        if principal is None or principal.user.generation != entry.generation:
            self._forget(key)
            return None
        return principal

    def verify(self, login: str, secret: str, allow_barcode: bool) -> Outcome:
        """The full check, argon2 included: call it off the event loop."""
        cred = self.store.find_credential(keys.credential_key(self.secret, secret))
        if cred is None:
            who = f"user {login!r}" if login else "password-only login"
            return Outcome(None, f"{who}: no such password or barcode")
        principal = self.store.principal(cred.user_id)
        if principal is None:
            return Outcome(None, "the credential's user is gone")
        if login and login.strip().casefold() != principal.user.name.casefold():
            return Outcome(None, f"user {login!r}: wrong password", cred.kind)
        if cred.kind == "barcode" and not allow_barcode:
            return Outcome(None, f"user {principal.user.name!r}: login by barcode is off for this base", cred.kind)
        with self._lock:
            self.argon2_runs += 1
        if not keys.verify_secret(cred.hash, secret):
            return Outcome(None, f"user {principal.user.name!r}: {cred.kind} does not verify", cred.kind)
        if self.cache_seconds > 0:
            entry = _Entry(principal.user.id, principal.user.generation, cred.kind,
                           self.clock() + self.cache_seconds)
            with self._lock:
                self._cache[keys.cache_key(self.secret, login, secret)] = entry
                while len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        return Outcome(principal, kind=cred.kind)

    def _forget(self, key: str) -> None:
        with self._lock:
            self._cache.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
