"""Gateway session tokens: what a client gets from ``POST /.gateway/login`` instead of resending Basic.

A token is 256 random bits, shown to the client once and stored only as its SHA-256 (a token
has full entropy, so a fast hash is enough). It dies at its TTL, on logout, and when the
user's password or barcode changes or the user is removed (the generation check).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Callable

from gateway.store.base import Principal, SessionRecord, Store

COOKIE_NAME = "gateway_session"
HEADER_NAME = "X-Gateway-Session"
MAX_TOKEN_LENGTH = 128


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Sessions:
    def __init__(self, store: Store, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock

    def create(self, principal: Principal) -> tuple[str, float]:
        """A new token for the user and its expiry time (epoch seconds)."""
        now = self.clock()
        token = secrets.token_urlsafe(32)
        self.store.create_session(token_hash(token), SessionRecord(principal.user.id, principal.user.generation,
                                                                   now + self.ttl))
        self.store.purge_sessions(now)
        return token, now + self.ttl

    def resolve(self, token: str) -> Principal | None:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        record = self.store.get_session(token_hash(token))
        if record is None or record.expires <= self.clock():
            return None
        principal = self.store.principal(record.user_id)
        if principal is None or principal.user.generation != record.generation:
            return None
        return principal

    def end(self, token: str) -> None:
        if token and len(token) <= MAX_TOKEN_LENGTH:
            self.store.delete_session(token_hash(token))
