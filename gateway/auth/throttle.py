"""Failed-login throttling: a sliding window per client address and per account.

The seed allows 10 failed logins a minute from one address; past that the address is refused
until the window lets it in again. Each failure is one row in the shared store (an insert, not
a counter update), so several processes count together without races and a restart keeps
the count. The clock is injected: tests move time instead of sleeping.

Every request is checked, but failures are rare, so the failure times read for a key are kept
(in memory) while the store's change marker (``Store.version()``) holds still: any failure
recorded anywhere, or a ban lifted, moves it and empties the memo, so the memo can never hide a
new failure. The verdict is computed afresh from those times on every check, so a ban ends,
and Retry-After counts down, exactly as with a fresh read.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from gateway.config import ThrottleSettings
from gateway.store.base import Store

IP_PREFIX = "ip:"
ACCOUNT_PREFIX = "user:"
# The console's own failure windows for logins from its allowed addresses (loopback, admin.allow):
# guesses on a base port fill "ip:"/"user:" and must never lock the administrator out of the
# console; the console's own failures fill "console-ip:"/"console-user:" and throttle there.
CONSOLE_SCOPE = "console-"
# Addresses and accounts remembered between store changes; beyond it the memo starts afresh
# (a flood of addresses costs a store read each, never unbounded memory).
MEMO_ENTRIES = 10_000


@dataclass(frozen=True)
class Verdict:
    blocked: bool
    failures: int
    retry_after: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, rounded up, at least 1 (RFC 9110 delay-seconds)."""
        return str(max(1, math.ceil(self.retry_after)))


NO_FAILURES = Verdict(False, 0)


# A short ban's key in the store names what led to it (``Store.add_strikes``), then the address.
SHORT_BAN_KINDS = {"reset": "address (HTTP/2 resets)"}


@dataclass(frozen=True)
class Ban:
    key: str
    failures: int
    retry_after: float
    short: bool = False  # from the store's short bans (HTTP/2 resets), not from failed logins

    @property
    def kind(self) -> str:
        if self.short:
            what = self.key.partition(":")[0]
            return SHORT_BAN_KINDS.get(what, f"address ({what})")
        scoped = self.key.startswith(CONSOLE_SCOPE)
        bare = self.key[len(CONSOLE_SCOPE):] if scoped else self.key
        return ("console " if scoped else "") + ("address" if bare.startswith(IP_PREFIX) else "user")

    @property
    def target(self) -> str:
        return self.key.partition(":")[2]


def window_verdict(times: Sequence[float], limit: int, window: float, now: float) -> Verdict:
    """Blocked while ``limit`` or more failures lie within the last ``window`` seconds."""
    recent = sorted(t for t in times if now - window < t <= now)
    if len(recent) < limit:
        return Verdict(False, len(recent))
    # Allowed again once only limit-1 failures remain in the window, i.e. when this one leaves it.
    leaves_at = recent[len(recent) - limit] + window
    return Verdict(True, len(recent), max(leaves_at - now, 0.0))


@functools.lru_cache(maxsize=4096)  # parsing an address costs more than the rest of a check
def ip_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return IP_PREFIX + address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # ::ffff:a.b.c.d is the IPv4 client a.b.c.d
    return IP_PREFIX + str(ip)


def account_key(login: str) -> str:
    return ACCOUNT_PREFIX + login.strip().casefold()


@dataclass(frozen=True)
class _Seen:
    since: float  # the read covered failures from this time on
    times: tuple[float, ...]


class Throttle:
    def __init__(self, store: Store, settings: ThrottleSettings, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._memo: dict[str, _Seen] = {}
        self._memo_version: int | None = None
        self._lock = threading.Lock()

    def _verdict(self, key: str, limit: int, window: float, version: int | None) -> Verdict:
        now = self.clock()
        since = now - window
        if version is None:
            version = self.store.version()  # before the read it guards (see Store.version)
        with self._lock:
            if version != self._memo_version:
                self._memo.clear()
                self._memo_version = version
            seen = self._memo.get(key)
        # A clock set back would need failures older than the read covered: read again.
        if seen is None or since < seen.since:
            seen = _Seen(since, tuple(self.store.failure_times(key, since)))
            with self._lock:
                if self._memo_version == version:
                    if len(self._memo) >= MEMO_ENTRIES:
                        self._memo.clear()
                    self._memo[key] = seen
        if not seen.times:
            return NO_FAILURES
        return window_verdict(seen.times, limit, window, now)

    def check_ip(self, address: str, version: int | None = None, scope: str = "") -> Verdict:
        """The address's verdict. ``version``: the store's change marker, when the caller has read it."""
        return self._verdict(scope + ip_key(address), self.settings.ip_failures, self.settings.ip_window, version)

    def check_account(self, login: str, version: int | None = None, scope: str = "") -> Verdict:
        return self._verdict(scope + account_key(login), self.settings.account_failures,
                             self.settings.account_window, version)

    def forget_memo(self) -> None:
        with self._lock:
            self._memo.clear()
            self._memo_version = None

    def record_failure(self, address: str, login: str | None = None, scope: str = "") -> None:
        now = self.clock()
        forget_before = now - max(self.settings.ip_window, self.settings.account_window)
        try:
            self.store.add_failure(scope + ip_key(address), now, forget_before)
            if login:
                self.store.add_failure(scope + account_key(login), now, forget_before)
        finally:
            # The store's version moves too; dropping the memo here does not depend on it.
            self.forget_memo()

    def lockouts(self, address: str, login: str | None, scope: str = "") -> list[tuple[str, str, Verdict, int]]:
        """(kind, target, verdict, limit) for the address and account whose failures have just
        reached their limit: the one failure that locks is logged, not the ones after it."""
        settings = self.settings
        prefix = "console " if scope else ""
        found = [(prefix + "address", address, self.check_ip(address, scope=scope), settings.ip_failures)]
        if login:
            found.append((prefix + "user", login, self.check_account(login, scope=scope), settings.account_failures))
        return [item for item in found if item[2].blocked and item[2].failures == item[3]]

    def bans(self) -> list[Ban]:
        """Addresses and accounts refused right now, longest wait first."""
        now = self.clock()
        since = now - max(self.settings.ip_window, self.settings.account_window)
        result = []
        for key, times in self.store.failure_keys(since).items():
            bare = key[len(CONSOLE_SCOPE):] if key.startswith(CONSOLE_SCOPE) else key
            if bare.startswith(IP_PREFIX):
                limit, window = self.settings.ip_failures, self.settings.ip_window
            elif not bare.startswith(ACCOUNT_PREFIX):
                continue  # a base's password-only (spray) window slows, never bans
            else:
                limit, window = self.settings.account_failures, self.settings.account_window
            verdict = window_verdict(times, limit, window, now)
            if verdict.blocked:
                result.append(Ban(key, verdict.failures, verdict.retry_after))
        result += [Ban(key, 0, until - now, short=True) for key, until in self.store.short_bans(now).items()]
        return sorted(result, key=lambda b: -b.retry_after)

    def lift(self, target: str) -> int:
        """Forget the failures of an address or a user name, and end an address's short bans;
        returns how many failures and bans were forgotten."""
        try:
            ipaddress.ip_address(target.split("%")[0])
        except ValueError:
            key = account_key(target)
        else:
            key = ip_key(target)
        try:
            # The base ports' window and the console's own: lifting a name frees it everywhere.
            lifted = self.store.clear_failures(key) + self.store.clear_failures(CONSOLE_SCOPE + key)
            if key.startswith(IP_PREFIX):
                for short in self.store.short_bans(self.clock()):
                    # The same address however it was written (::ffff:a.b.c.d is a.b.c.d).
                    if ip_key(short.partition(":")[2]) == key:
                        lifted += self.store.lift_short_ban(short)
            return lifted
        finally:
            self.forget_memo()
