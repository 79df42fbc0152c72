"""Console sessions: a random cookie token, a CSRF token, an idle timeout.

Held in the memory of the process serving the admin listener (only that process answers
console requests); the store keeps only what every gateway process must share. The token is
kept hashed, so a memory dump of the table cannot be replayed as a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

COOKIE = "gw_console"
# A desk left alone for a quarter of an hour is logged out.
IDLE_TIMEOUT = 15 * 60
MAX_SESSIONS = 1000


@dataclass
class ConsoleSession:
    user_id: str
    user_name: str
    generation: int  # the user's when logged in: a changed password or removal ends the session
    csrf: str
    last_seen: float
    flash: object = None  # the outcome of the last change, shown once on the next page
    kept: dict[str, str] = field(default_factory=dict)  # a refused form's typed values (never secrets), shown once
    last_group: str = ""  # the group of the last user added, offered again by "Add a user"
    must_enrol: bool = False  # logged in by password where two-step login is required, none enrolled yet
    pending_secret: str = ""  # a TOTP secret shown as a QR code, not yet confirmed by a first code


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class ConsoleSessions:
    def __init__(self, idle_timeout: float = IDLE_TIMEOUT, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_timeout = idle_timeout
        self.clock = clock
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = threading.Lock()

    def create(self, user_id: str, user_name: str, generation: int) -> tuple[str, ConsoleSession]:
        token = secrets.token_urlsafe(32)
        session = ConsoleSession(user_id, user_name, generation, secrets.token_urlsafe(32), self.clock())
        with self._lock:
            self._purge()
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].last_seen)
                del self._sessions[oldest]
            self._sessions[_digest(token)] = session
        return token, session

    def get(self, token: str) -> ConsoleSession | None:
        """The live session for a cookie value, its idle clock restarted; None when absent or idle too long."""
        if not token:
            return None
        key = _digest(token)
        now = self.clock()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if now - session.last_seen > self.idle_timeout:
                del self._sessions[key]
                return None
            session.last_seen = now
            return session

    def end(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(_digest(token), None)

    def _purge(self) -> None:
        now = self.clock()
        for key in [k for k, s in self._sessions.items() if now - s.last_seen > self.idle_timeout]:
            del self._sessions[key]


def csrf_ok(session: ConsoleSession, submitted: str) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf.encode(), submitted.encode("utf-8", "replace"))
