"""The console's second factor: a user's TOTP secret and one-time recovery codes in the store.

Kept as one small shared value per user (``second-factor:<user id>``) so the SQLite and the
Redis store both hold it with no schema of their own. Recovery codes are stored only as SHA-256
digests (each has 50 random bits, far beyond what the login throttle lets anyone try). A code is
single-use across every gateway process: its time step (or the recovery code's digest) is
claimed in the store before the login is admitted, and a second use of it is refused.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from gateway.auth import totp
from gateway.store import Store

RECOVERY_CODES = 8
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread on paper
# A used recovery code stays claimed this long (the claim table forgets expired claims).
_FOREVER = 20 * 365 * 24 * 3600


@dataclass(frozen=True)
class SecondFactor:
    secret: str
    recovery: tuple[str, ...]  # SHA-256 hex digests of the unused recovery codes
    enrolled_at: float


def _name(user_id: str) -> str:
    return f"second-factor:{user_id}"


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace(" ", "").encode("utf-8")).hexdigest()


def load(store: Store, user_id: str) -> SecondFactor | None:
    raw = store.get_shared(_name(user_id))
    if raw is None:
        return None
    data = json.loads(raw)
    return SecondFactor(data["secret"], tuple(data["recovery"]), float(data["enrolled_at"]))


def save(store: Store, user_id: str, factor: SecondFactor) -> None:
    store.put_shared(_name(user_id), json.dumps(
        {"secret": factor.secret, "recovery": list(factor.recovery), "enrolled_at": factor.enrolled_at}))


def remove(store: Store, user_id: str) -> bool:
    """Forget the user's second factor (a lost phone); True when there was one."""
    had = store.get_shared(_name(user_id)) is not None
    store.delete_shared(_name(user_id))
    return had


def new_recovery_codes() -> list[str]:
    return ["-".join("".join(secrets.choice(_ALPHABET) for _ in range(5)) for _ in range(2))
            for _ in range(RECOVERY_CODES)]


def enrol(store: Store, user_id: str, secret: str, code: str, now: float | None = None) -> list[str] | None:
    """Confirm a new secret by its first code: saves it and returns the recovery codes (shown once),
    or None when the code does not match."""
    now = time.time() if now is None else now
    step = totp.matching_step(secret, code, now)
    if step is None or not store.claim(f"totp-used:{user_id}:{step}", now, now + 3 * totp.STEP * 2):
        return None
    codes = new_recovery_codes()
    save(store, user_id, SecondFactor(secret, tuple(_digest(c) for c in codes), now))
    return codes


def verify(store: Store, user_id: str, code: str, now: float | None = None) -> str:
    """``"totp"`` or ``"recovery"`` when the code admits the user (and is now used up), else ``""``."""
    now = time.time() if now is None else now
    factor = load(store, user_id)
    if factor is None or not code.strip():
        return ""
    step = totp.matching_step(factor.secret, code, now)
    if step is not None:
        # The window spans three steps; the claim outlives it, so a code seen once is never taken twice.
        return "totp" if store.claim(f"totp-used:{user_id}:{step}", now, now + 3 * totp.STEP * 2) else ""
    digest = _digest(code)
    if digest in factor.recovery and store.claim(f"totp-recovery:{user_id}:{digest}", now, now + _FOREVER):
        save(store, user_id, SecondFactor(factor.secret, tuple(d for d in factor.recovery if d != digest),
                                          factor.enrolled_at))
        return "recovery"
    return ""
