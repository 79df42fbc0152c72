"""The driver of ``gateway.auth.login``: carries out a login attempt's actions on the event loop.

Store calls run in the store threads, argon2 in the verification pool, waits are asyncio sleeps:
nothing here blocks the event loop. The proxy's Auth addon and the admin console share this one
path, so a console login counts against the same address and account windows as any other:

    logins = Logins(store, authenticator, throttle, verify_pool, store_pool)
    decision = await logins.login(address, creds, base_id="console", base_name="console",
                                  allow_barcode=False, whitelisted=False)
    if isinstance(decision, Admit): ...decision.principal...  (then check its role)
    else: ...answer decision.status (401 or 429, Retry-After: decision.retry_after_header)...

``login`` asks the success cache first; the proxy, which does that on the event loop itself,
calls ``check`` on a miss. ``creds`` None with ``malformed=<why>`` counts an unreadable header.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from gateway.auth.authenticate import Authenticator, Outcome
from gateway.auth.credentials import BasicCredentials
from gateway.auth.login import (
    LEASE, SPRAY_DELAY, Admit, Failure, LoginAttempt, Refuse, Reserve, SprayAlert, Verify, Wait,
    decide_cached,
)
from gateway.store import Principal, Reservation, Store, StoreUnavailable
from gateway.auth.throttle import Throttle, Verdict

logger = logging.getLogger("gateway.auth")

T = TypeVar("T")


class WaitingRoom:
    """Attempts of this process waiting for a place, per key, woken when one of ours is settled."""

    def __init__(self) -> None:
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    async def wait(self, key: str, seconds: float) -> bool:
        """True if woken by a settled attempt, False on timeout (a place freed elsewhere is polled for)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(key, deque())
        queue.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), seconds)
            return True
        except TimeoutError:
            return False
        finally:
            if waiter in queue:
                queue.remove(waiter)
            if not queue and self._waiting.get(key) is queue:
                del self._waiting[key]

    def wake(self, key: str, count: int | None = 1) -> None:
        """Wake ``count`` waiters of ``key`` in arrival order (None: all of them)."""
        queue = self._waiting.get(key)
        while queue and (count is None or count > 0):
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if count is not None:
                    count -= 1


class Logins:
    def __init__(self, store: Store, authenticator: Authenticator, throttle: Throttle,
                 verify_pool: ThreadPoolExecutor, store_pool: ThreadPoolExecutor) -> None:
        self.store = store
        self.authenticator = authenticator
        self.throttle = throttle
        self.verify_pool = verify_pool
        self.store_pool = store_pool
        self.room = WaitingRoom()
        self._spray_queues: dict[str, asyncio.Lock] = {}
        # verifications under way, by (cache key, barcode allowed): see shared_verification
        self._flights: dict[tuple[str, bool], asyncio.Future[Outcome]] = {}

    async def _in_store_thread(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.store_pool, func, *args)

    async def login(self, address: str, creds: BasicCredentials | None, *, base_id: str, base_name: str,
                    allow_barcode: bool, whitelisted: bool, malformed: str = "", scope: str = "") -> Admit | Refuse:
        """The whole login — success cache first, then ``check`` — for callers off the proxy's hot
        path, such as the admin console ("this admin's login from this address"). ``scope``: the
        failure windows to count in (``throttle.CONSOLE_SCOPE`` for the console's own)."""
        if creds is not None:
            cached = await self._in_store_thread(self._cached_decision, address, creds, allow_barcode, whitelisted,
                                                 scope)
            if cached is not None:
                return cached
        return await self.check(address, creds, base_id=base_id, base_name=base_name, allow_barcode=allow_barcode,
                                whitelisted=whitelisted, malformed=malformed, scope=scope)

    async def check(self, address: str, creds: BasicCredentials | None, *, base_id: str, base_name: str,
                    allow_barcode: bool, whitelisted: bool, malformed: str = "",
                    device_allows: Callable[[Principal], bool] | None = None, scope: str = "") -> Admit | Refuse:
        """Decide an uncached login. ``creds`` None: the Authorization header was malformed
        (``malformed`` says how); that costs a place and counts as a failure like a wrong secret.
        ``device_allows``: False for a user bound to other devices than the connection's — the
        right secret from the wrong device is a failed login, counted like a wrong one."""
        account = None
        if creds is not None:
            account = await self._in_store_thread(self.authenticator.account_of, creds.login, creds.secret)
        attempt = LoginAttempt(self.throttle.settings, address, creds.login if creds is not None else None,
                               account, base_id, whitelisted, time.time(), scope)
        try:
            return await self._drive(attempt, creds, base_name, allow_barcode, malformed, device_allows)
        except BaseException:
            if attempt.holding:
                # A store error, a bug, or the client gone (cancelled): give the places back now
                # rather than when the lease runs out. Best effort, off the loop, not awaited.
                self.store_pool.submit(self.store.release, attempt.holder)
            raise

    async def _drive(self, attempt: LoginAttempt, creds: BasicCredentials | None, base_name: str,
                     allow_barcode: bool, malformed: str,
                     device_allows: Callable[[Principal], bool] | None = None) -> Admit | Refuse:
        def allowed(decision: Admit | Refuse | None) -> bool:
            return decision is not None and (device_allows is None or not isinstance(decision, Admit)
                                             or device_allows(decision.principal))

        base_id = attempt.base_id
        action: Any = attempt.start()
        waited = False
        while True:
            if isinstance(action, Reserve):
                if waited and creds is not None:
                    # Another attempt with these credentials may have been verified meanwhile.
                    cached = await self._in_store_thread(self._cached, attempt, creds, allow_barcode)
                    if cached is not None and allowed(cached):
                        return cached
                result, spray = await self._in_store_thread(self._reserve, action)
                action = attempt.reserved(result, spray)
                if isinstance(action, Refuse) and result.outcome == "refused":
                    self.room.wake(result.key, None)  # the others waiting on this window: refused too
            elif isinstance(action, Wait):
                progressed = await self.room.wait(action.key, action.seconds)
                waited = True
                action = attempt.waited(time.time(), progressed)
            elif isinstance(action, Verify):
                if not attempt.holding:
                    self._require_store_up()
                if action.alert is not None:
                    await self._raise_alert(action.alert)
                if creds is not None and not self._in_flight(creds, allow_barcode):
                    # Verified by a concurrent attempt that landed while this one reserved.
                    cached = await self._in_store_thread(self._cached, attempt, creds, allow_barcode)
                    if cached is not None and allowed(cached):
                        await self._in_store_thread(self.store.release, attempt.holder)
                        self._wake_next(attempt)
                        return cached
                if creds is None:
                    outcome = Outcome(None, malformed or "malformed credentials")
                else:
                    outcome = await self._verify(creds, allow_barcode, base_id, action.queued)
                    if outcome.principal is not None and device_allows is not None \
                            and not device_allows(outcome.principal):
                        outcome = Outcome(None, f"user {outcome.principal.user.name!r} logs in only from "
                                                "the devices enrolled for it")
                action = attempt.verified(outcome.principal, outcome.reason, time.time())
            elif isinstance(action, Admit):
                if action.release is not None:
                    await self._in_store_thread(self._release, action, attempt, creds, allow_barcode)
                    self._wake_next(attempt)
                return action
            else:
                assert isinstance(action, Refuse)
                if action.status == 401:
                    await self._failed(attempt, action, base_name)
                return action

    def _require_store_up(self) -> None:
        """A whitelisted attempt holds no place (it is never counted); while the store cannot
        record anything it is not checked either, like every other attempt (fail closed)."""
        health = getattr(self.store, "health", None)
        if health is not None and not health.up:
            raise StoreUnavailable(health.problem or "the user store is down")

    def _wake_next(self, attempt: LoginAttempt) -> None:
        """The attempt's places are settled: the first waiter of each learns where it stands."""
        for place in attempt.places:
            self.room.wake(place.key)

    def _release(self, admit: Admit, attempt: LoginAttempt, creds: BasicCredentials | None,
                 allow_barcode: bool) -> None:
        assert admit.release is not None and creds is not None
        self.store.release(admit.release)
        # Giving the place back is a write, which moves the store's change marker: read again now
        # what the next requests of this client need (its address's and account's failures, the
        # cached user), so they stay on the no-read fast path instead of each finding a moved marker.
        version = self.store.version()
        self.throttle.check_ip(attempt.address, version, attempt.scope)
        self.throttle.check_account(admit.principal.user.name, version, attempt.scope)
        self.authenticator.lookup(self.authenticator.cache_key(creds.login, creds.secret), allow_barcode, version)

    def _cached(self, attempt: LoginAttempt, creds: BasicCredentials, allow_barcode: bool) -> Admit | Refuse | None:
        return self._cached_decision(attempt.address, creds, allow_barcode, attempt.whitelisted, attempt.scope)

    def _cached_decision(self, address: str, creds: BasicCredentials, allow_barcode: bool,
                         whitelisted: bool, scope: str = "") -> Admit | Refuse | None:
        hit = self.authenticator.lookup(self.authenticator.cache_key(creds.login, creds.secret), allow_barcode)
        if hit is None:
            return None
        return decide_cached(hit.principal, self.throttle.check_ip(address, scope=scope),
                             self.throttle.check_account(hit.principal.user.name, scope=scope), whitelisted)

    def _reserve(self, action: Reserve) -> tuple[Reservation, tuple[int, int] | None]:
        result = self.store.reserve(action.places, action.holder, action.now, LEASE)
        spray = None
        if result.outcome == "reserved" and action.spray_key is not None:
            failures, addresses, checking = self.store.failure_summary(action.spray_key, action.spray_since)
            # Checks under way on every process and machine (their places in the spray key, this
            # one's own just taken) count against the budget as failures to be, as the
            # per-address reserve counts its places (issue 24 point 8: a burst checked all at once
            # is a spray before a single failure is recorded).
            spray = (failures + max(0, checking - 1), addresses)
        return result, spray

    async def _verify(self, creds: BasicCredentials, allow_barcode: bool, base_id: str, queued: bool) -> Outcome:
        # shield: a client that goes away must not cancel the verification others are waiting for.
        if not queued:
            return await asyncio.shield(self.shared_verification(creds, allow_barcode))
        queue = self._spray_queues.setdefault(base_id, asyncio.Lock())
        async with queue:  # one password-only check at a time on this base while a spray goes on
            await asyncio.sleep(SPRAY_DELAY)
            return await asyncio.shield(self.shared_verification(creds, allow_barcode))

    def _in_flight(self, creds: BasicCredentials, allow_barcode: bool) -> bool:
        return (self.authenticator.cache_key(creds.login, creds.secret), allow_barcode) in self._flights

    def shared_verification(self, creds: BasicCredentials, allow_barcode: bool) -> asyncio.Future[Outcome]:
        """One argon2 run for all concurrent requests with the same credentials (single flight).

        Without it, every connection that misses the cache at the same moment (a cold start, an
        entry past its maximum age) runs its own argon2 — 64 MiB and a fifth of a second each.
        Each request still holds its own place and counts as its own attempt.
        """
        flight = (self.authenticator.cache_key(creds.login, creds.secret), allow_barcode)
        pending = self._flights.get(flight)
        if pending is None:
            pending = asyncio.get_running_loop().run_in_executor(
                self.verify_pool, self.authenticator.verify, creds.login, creds.secret, allow_barcode)
            self._flights[flight] = pending

            def landed(done: asyncio.Future[Outcome]) -> None:
                if self._flights.get(flight) is done:
                    del self._flights[flight]
                if not done.cancelled():
                    done.exception()  # marks it retrieved even if every waiter has gone

            pending.add_done_callback(landed)
        return pending

    async def _failed(self, attempt: LoginAttempt, refusal: Refuse, base_name: str) -> None:
        logger.info("login failed from %s: %s", attempt.address, refusal.reason,
                    extra={"event": "login-failed", "client": attempt.address, "base": base_name})
        failure = refusal.failure
        if failure is None:
            return  # whitelisted: never counted
        try:
            lockouts = await self._in_store_thread(self._settle, failure, attempt.address, attempt.account,
                                                   attempt.scope)
        finally:
            self._wake_next(attempt)  # a place became a failure: the next in line learns where it stands
        for kind, target, verdict, limit in lockouts:
            logger.warning("lockout: %s %s reached %d failed logins; refused for %s s", kind, target, limit,
                           verdict.retry_after_header,
                           extra={"event": "lockout", "client": attempt.address, "target": target, "kind": kind,
                                  "base": base_name})

    def _settle(self, failure: Failure, address: str, account: str | None,
                scope: str = "") -> list[tuple[str, str, Verdict, int]]:
        try:
            self.store.settle_failure(failure.holder, failure.rows, failure.at, failure.forget_before)
        finally:
            self.throttle.forget_memo()
        return self.throttle.lockouts(address, account, scope)

    async def _raise_alert(self, alert: SprayAlert) -> None:
        first = await self._in_store_thread(self.store.claim, alert.claim_key, time.time(), alert.until)
        if first:
            logger.warning("spray-detected: %d failed password-only logins on base %s from %d addresses within "
                           "%.0f s; password-only logins there are now checked one at a time", alert.failures,
                           alert.base_id, alert.addresses, self.throttle.settings.spray_window,
                           extra={"event": "spray-detected", "base": alert.base_id, "addresses": alert.addresses,
                                  "failures": alert.failures})
