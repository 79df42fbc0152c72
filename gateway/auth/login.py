"""One login attempt's decision, without any I/O (in the style of h11).

A ``LoginAttempt`` is told facts — the address, the login name, the time, what the driver read
from the store — and answers with the next action for the driver to carry out: ``Reserve`` a
place in the failure windows, ``Wait`` for one, ``Verify`` the secret, then ``Admit`` or
``Refuse``. The driver (``gateway/auth/login_driver.py`` for the proxy and the console) does the I/O: store
calls in threads, argon2 in its pool, sleeping, answering the client.

The guarantee it builds: an attempt holds a place in every window it could fail in (its address,
the account its name or secret points to) *before* it is checked, and gives the place back on
success or turns it into a failure row on failure, each in one atomic store step. So however many
attempts arrive at once, on however many connections, processes or machines, at most the limit
can fail per window. An attempt that finds the places all held by attempts still being checked
waits for them; only a window full of recorded failures refuses it (429, no check at all).

Password-only and barcode logins (no user name) also count per base, from all addresses together:
past ``spray_failures`` per ``spray_window`` they are checked one at a time (``Verify.queued``)
and one ``spray-detected`` event is raised per window (``Verify.alert``). Checks still under way
count against that budget as failures to be: each holds a place in the base's spray key too (a
``Place`` with no limit: counted, never waited for), in the same store step as its other places,
so a burst spread over workers and machines is seen whole before a single failure is recorded.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from gateway.config import ThrottleSettings
from gateway.store.base import Place, Principal, Reservation
from gateway.auth.throttle import Verdict, account_key, ip_key

# A held place outlives a process that died mid-check by at most this many seconds.
LEASE = 60.0
# Polling for places freed by other processes (this process's own are signalled at once).
WAIT_POLL = 0.5
# A waiting attempt gives up when no place has been freed for this long, or after WAIT_MAX in all:
# long enough for a shift's worth of terminals behind one NAT address to get through argon2 in turn.
WAIT_STALL = 5.0
WAIT_MAX = 60.0
# While a spray goes on, each password-only check of the base waits this long, one at a time.
SPRAY_DELAY = 0.1
SPRAY_PREFIX = "spray:"


# --- actions (what the driver must do next) ---

@dataclass(frozen=True)
class Reserve:
    """Call ``store.reserve(places, holder, now, LEASE)``; if ``spray_key``, also
    ``store.failure_summary(spray_key, spray_since)``; then ``attempt.reserved(...)``."""

    places: tuple[Place, ...]
    holder: str
    now: float
    spray_key: str | None
    spray_since: float


@dataclass(frozen=True)
class Wait:
    """Sleep up to ``seconds`` (less if this process frees a place in ``key``), then ``attempt.waited(...)``."""

    key: str
    seconds: float


@dataclass(frozen=True)
class SprayAlert:
    """Raise ``spray-detected`` if ``store.claim(claim_key, now, until)`` says this is the first."""

    base_id: str
    claim_key: str
    until: float
    failures: int
    addresses: int


@dataclass(frozen=True)
class Verify:
    """Check the secret (success cache miss: argon2 or the keyed-hash lookup), then ``attempt.verified(...)``.
    ``queued``: one at a time per base, ``SPRAY_DELAY`` each (a spray goes on)."""

    queued: bool = False
    alert: SprayAlert | None = None


@dataclass(frozen=True)
class Failure:
    """``store.settle_failure(holder, rows, at, forget_before)``: the held places become failures."""

    holder: str
    rows: tuple[tuple[str, str], ...]  # (key, who)
    at: float
    forget_before: float


@dataclass(frozen=True)
class Admit:
    principal: Principal
    release: str | None = None  # ``store.release(holder)`` first: the places are free again


@dataclass(frozen=True)
class Refuse:
    status: int  # 401 (wrong secret) or 429 (throttled)
    reason: str  # for the log; never a secret
    retry_after: float = 0.0
    failure: Failure | None = None  # to record before answering

    @property
    def retry_after_header(self) -> str:
        return Verdict(True, 0, self.retry_after).retry_after_header


Action = Reserve | Wait | Verify | Admit | Refuse


def decide_cached(principal: Principal, ip: Verdict, account: Verdict, whitelisted: bool) -> Admit | Refuse:
    """A credential from the success cache needs no place, but a locked address or account stays locked."""
    if not whitelisted:
        if ip.blocked:
            return Refuse(429, f"{ip.failures} failed logins from this address", ip.retry_after)
        if account.blocked:
            return Refuse(429, f"user {principal.user.name!r}: {account.failures} failed logins", account.retry_after)
    return Admit(principal)


@dataclass
class LoginAttempt:
    """One uncached login. ``login``: the user name sent ("" for password-only and barcode logins,
    None when the credentials could not even be read). ``account``: that name, or for a
    password-only login the name of the user the secret belongs to (None when nobody's)."""

    settings: ThrottleSettings
    address: str
    login: str | None
    account: str | None
    base_id: str
    whitelisted: bool
    now: float
    scope: str = ""  # CONSOLE_SCOPE: the console's own windows (gateway/auth/throttle.py)
    holder: str = field(default_factory=lambda: secrets.token_hex(12))
    holding: bool = False  # places reserved and not yet settled by verified()
    _started: float = 0.0
    _progress: float = 0.0
    _holders: str = ""

    def __post_init__(self) -> None:
        self._started = self._progress = self.now

    @property
    def password_only(self) -> bool:
        return self.login == ""

    @property
    def places(self) -> tuple[Place, ...]:
        """The windows this attempt could fail in, each needing a place before the check."""
        if self.whitelisted:
            return ()
        s = self.settings
        places = [Place(self.scope + ip_key(self.address), s.ip_failures, s.ip_window)]
        if self.account:
            places.append(Place(self.scope + account_key(self.account), s.account_failures, s.account_window))
        return tuple(places)

    @property
    def spray_key(self) -> str | None:
        return SPRAY_PREFIX + self.base_id if self.password_only and not self.whitelisted else None

    def start(self) -> Reserve | Verify:
        places = self.places
        if not places:
            return Verify()
        return self._reserve()

    def _reserve(self) -> Reserve:
        places = self.places
        spray_key = self.spray_key
        if spray_key is not None:
            places += (Place(spray_key, 0, self.settings.spray_window),)
        return Reserve(places, self.holder, self.now, spray_key, self.now - self.settings.spray_window)

    def reserved(self, result: Reservation, spray: tuple[int, int] | None = None) -> Verify | Wait | Refuse:
        """``spray``: (failures and other checks under way, addresses) of the base's password-only
        window, when asked for."""
        if result.outcome == "refused":
            what = f"address {self.address}" if result.key.startswith(self.scope + "ip:") else f"user {self.account!r}"
            return Refuse(429, f"{what}: {result.failures} failed logins", result.retry_after)
        if result.outcome == "wait":
            if result.holders != self._holders:  # places freed or taken, here or in another process
                self._holders, self._progress = result.holders, self.now
            if self.now - self._progress >= WAIT_STALL or self.now - self._started >= WAIT_MAX:
                return Refuse(429, f"too many logins at once; waited {self.now - self._started:.0f} s for a place", 1.0)
            return Wait(result.key, WAIT_POLL)
        self.holding = True
        if spray is not None and spray[0] >= self.settings.spray_failures:
            alert = SprayAlert(self.base_id, f"spray-event:{self.base_id}", self.now + self.settings.spray_window,
                               spray[0], spray[1])
            return Verify(queued=True, alert=alert)
        return Verify()

    def waited(self, now: float, progressed: bool) -> Reserve:
        """``progressed``: a place was freed (or filled) by this process while waiting; a change
        made by another process shows as other holders in the next ``Reservation``."""
        self.now = now
        if progressed:
            self._progress = now
        return self._reserve()

    def verified(self, principal: Principal | None, reason: str, now: float) -> Admit | Refuse:
        """The check's outcome: admit (and free the places) or record the failure."""
        holder = self.holder if self.holding else None
        self.holding = False  # the action returned settles them
        if principal is not None:
            return Admit(principal, holder)
        if self.whitelisted:
            return Refuse(401, reason)
        rows = [(key, self.address) for key in (place.key for place in self.places)]
        if self.spray_key:
            rows.append((self.spray_key, ip_key(self.address).partition(":")[2]))
        s = self.settings
        forget_before = now - max(s.ip_window, s.account_window, s.spray_window)
        return Refuse(401, reason, failure=Failure(self.holder, tuple(rows), now, forget_before))
