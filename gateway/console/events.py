"""Which log records are security events, and a bounded in-memory ring of them.

The console reads the shared journal (journal.py) instead, which every process writes; the
ring remains for code that wants one process's recent events without touching disk.

Only records carrying an ``event`` field (``extra={"event": ...}``) of a security kind are kept;
their message is the log line, which by contract never holds a secret. One ring per process:
with several workers each console shows what its own process saw.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections import deque
from dataclasses import dataclass

from gateway.logsetup import CONSOLE_EVENTS

# One list for the security log and the console (gateway/logsetup.py); the console adds back-end failures.
SECURITY_EVENTS = CONSOLE_EVENTS
# A screenful or two; older events are in the security log.
RING_SIZE = 200


@dataclass(frozen=True)
class SecurityEvent:
    at: datetime.datetime  # UTC
    event: str
    level: str
    message: str
    base: str = ""
    client: str = ""


class EventRing(logging.Handler):
    def __init__(self, size: int = RING_SIZE) -> None:
        super().__init__(level=logging.DEBUG)
        self._events: deque[SecurityEvent] = deque(maxlen=size)
        self._ring_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        kind = getattr(record, "event", None)
        if kind not in SECURITY_EVENTS:
            return
        try:
            event = SecurityEvent(
                at=datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc),
                event=str(kind),
                level=record.levelname,
                message=record.getMessage(),
                base=str(getattr(record, "base", "") or ""),
                client=str(getattr(record, "client", "") or ""),
            )
        except Exception:  # a bad format string must not break the code that logged it
            self.handleError(record)
            return
        with self._ring_lock:
            self._events.append(event)

    def recent(self) -> list[SecurityEvent]:
        """Newest first."""
        with self._ring_lock:
            return list(reversed(self._events))
