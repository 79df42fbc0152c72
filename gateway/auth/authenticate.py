"""Checking a login and secret against the stored users, with a short cache of successes.

Password-only logins find their user through the keyed-hash index, never by trying every
user's argon2 hash. A success is cached under a keyed hash of login and secret (never the
secret itself), together with the user (a Principal), its generation, and the store's change
marker (``Store.version()``) read before the user was. A hit costs no store read while that
marker holds still. Once it moves — anything written anywhere, by any process — the entry is
checked again against the user's current generation before use, so a password change or a
removal ends it at once; a profile or group change is picked up the same way.

An entry lives ``cache_seconds`` after its last use, and never longer than ``max_age`` after
its argon2 verification, after which the secret is verified again. A hit in the last tenth of
that age says so (``Hit.refresh``), so the caller can verify again in the background while the
entry still serves, instead of making every request wait for argon2 when it runs out.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from gateway.store import keys
from gateway.store.base import Principal, Store

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

# Enough entries for every device of a large warehouse; the oldest is dropped beyond it.
CACHE_ENTRIES = 10_000
# However often it is used, a cached success is verified with argon2 again after this many
# cache_seconds: a bound on how long a missed change could go unnoticed.
MAX_AGE_FACTOR = 10
REFRESH_AHEAD = 0.1  # the last tenth of max_age: a hit there asks for a background verification


@dataclass(frozen=True, slots=True)
class Hit:
    principal: Principal
    refresh: bool  # the entry nears its maximum age: verify again now, off the request's path


@dataclass(frozen=True)
class Outcome:
    principal: Principal | None
    reason: str = ""  # for the log, never a secret; the client only sees a generic text
    kind: str = ""  # "password" or "barcode" when known

    @property
    def ok(self) -> bool:
        return self.principal is not None


@dataclass(slots=True)
class _Entry:
    # Changed in place under the Authenticator's lock: a hit must stay cheaper than a store read.
    principal: Principal
    kind: str
    version: int  # the store's change marker when the principal was last read
    expires: float  # sliding: cache_seconds after the last use
    verified_until: float  # fixed: max_age after the argon2 verification


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

    @property
    def max_age(self) -> float:
        return self.cache_seconds * MAX_AGE_FACTOR

    def cache_key(self, login: str, secret: str) -> str:
        """The key a credential is cached (and its verification shared) under; not reversible."""
        return keys.cache_key(self.secret, login, secret)

    def cached(self, login: str, secret: str, allow_barcode: bool, version: int | None = None) -> Principal | None:
        hit = self.lookup(self.cache_key(login, secret), allow_barcode, version)
        return hit.principal if hit else None

    def lookup(self, key: str, allow_barcode: bool, version: int | None = None) -> Hit | None:
        """The user for a recently verified credential, or None; cheap enough for the event loop.

        ``version``: the store's change marker, if the caller has already read it for this request.
        """
        if self.cache_seconds <= 0:
            return None
        with self._lock:
            entry = self._cache.get(key)
        if entry is None:
            return None
        now = self.clock()
        if now >= entry.expires or now >= entry.verified_until:
            self._forget(key, entry)
            return None
        if entry.kind == "barcode" and not allow_barcode:
            return None  # another base may allow it; verify() refuses it here without argon2
        if version is None:
            version = self.store.version()
        principal = entry.principal
        if version != entry.version:
            fresh = self.store.principal(principal.user.id)
            if fresh is None or fresh.user.generation != principal.user.generation:
                self._forget(key, entry)
                return None
            principal = fresh
        with self._lock:
            if entry.version != version:
                entry.principal, entry.version = principal, version
            entry.expires = min(now + self.cache_seconds, entry.verified_until)
            if self._cache.get(key) is entry:  # not replaced or dropped meanwhile
                self._cache.move_to_end(key)
        return Hit(principal, now >= entry.verified_until - self.max_age * REFRESH_AHEAD)

    def account_of(self, login: str, secret: str) -> str | None:
        """The account an attempt counts against: the name it gives, else the user whose password
        or barcode the secret is (one keyed-hash lookup, no argon2), else None."""
        if login:
            return login
        cred = self.store.find_credential(keys.credential_key(self.secret, secret))
        user = self.store.get_user(cred.user_id) if cred is not None else None
        return user.name if user is not None else None

    def verify(self, login: str, secret: str, allow_barcode: bool) -> Outcome:
        """The full check, argon2 included: call it off the event loop."""
        version = self.store.version()  # before the reads it guards
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
            now = self.clock()
            entry = _Entry(principal, cred.kind, version, now + self.cache_seconds, now + self.max_age)
            key = self.cache_key(login, secret)
            with self._lock:
                self._cache[key] = entry
                self._cache.move_to_end(key)
                while len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        return Outcome(principal, kind=cred.kind)

    def _forget(self, key: str, entry: _Entry) -> None:
        with self._lock:
            if self._cache.get(key) is entry:
                del self._cache[key]

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def authenticator_for(cfg: GatewayConfig, store: Store, previous: Authenticator | None) -> Authenticator:
    """The authenticator for a configuration over the process's store: the previous one while the
    store is the same (so a reload keeps the success cache), else a new one."""
    if previous is not None and previous.store is store:
        previous.cache_seconds = cfg.auth.cache_seconds
        return previous
    return Authenticator(store, keys.load_or_create_secret(cfg.state_dir), cfg.auth.cache_seconds)
