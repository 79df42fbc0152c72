"""Folding repeated security events, for the security log and the event journal.

A flood of refused heads, denied addresses or failed logins is one story told thousands of
times: per (event kind, client address) the first ``FOLD_AFTER`` records of a ``WINDOW`` are
written, the rest only counted, and one summary line says how many were left out
("refused-head from 203.0.113.7: 2,087 more in 10 s"). Each kind also has a ceiling of
``KIND_CEILING`` written records per window whatever the addresses (a spray from many addresses),
so a flood from a whole network costs a bounded number of lines too.

Events that matter one by one — lockouts and bans, state alarms, configuration, account and
console changes — are never folded and never counted against anything (``NEVER_FOLDED``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

WINDOW = 10.0
FOLD_AFTER = 5  # records per kind and address in a window before folding starts
KIND_CEILING = 100  # records per kind in a window, all addresses together
MAX_KEYS = 10_000  # distinct (kind, address) pairs remembered; past that the oldest window ends early

NEVER_FOLDED = frozenset({
    "lockout", "banned", "ban-lifted", "spray-detected", "state-lost", "state-init", "new-local-ca",
    "config-reloaded", "config-reload-refused", "user-added", "user-removed", "password-changed",
    "weak-password-forced", "console-change", "console-login", "console-logout", "admin-login",
    "acme-renewal-failed", "acme-certificate-installed", "http2-reset-flood", "reset-ban",
})


def kind_of(record: logging.LogRecord) -> str:
    return str(getattr(record, "event", "") or getattr(record, "verdict", "") or "")


class FoldEvents(logging.Filter):
    """A handler's filter; ``emit`` writes a summary record through the same handler."""

    def __init__(self, emit: Callable[[logging.LogRecord], object], clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._emit = emit
        self._clock = clock
        self._lock = threading.Lock()
        # (kind, address) → [window start, written, left out, a record to model the summary on]
        self._pairs: dict[tuple[str, str], list] = {}
        self._kinds: dict[str, list] = {}  # kind → [window start, written, left out, record]
        self._next_sweep = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_folded", False):
            return True
        kind = kind_of(record)
        if not kind or kind in NEVER_FOLDED:
            return True
        now = record.created
        summaries: list[logging.LogRecord] = []
        with self._lock:
            if now >= self._next_sweep:
                self._next_sweep = now + 1.0
                summaries = self._sweep(now)
            address = str(getattr(record, "client", "") or "")
            pair = self._pairs.get((kind, address))
            if pair is None:
                if len(self._pairs) >= MAX_KEYS:
                    summaries += self._sweep(now, force=True)
                pair = self._pairs[(kind, address)] = [now, 0, 0, record]
            per_kind = self._kinds.get(kind)
            if per_kind is None:
                per_kind = self._kinds[kind] = [now, 0, 0, record]
            if pair[1] < FOLD_AFTER and per_kind[1] < KIND_CEILING:
                pair[1] += 1
                per_kind[1] += 1
                keep = True
            else:
                if pair[1] < FOLD_AFTER:
                    per_kind[2] += 1  # crowded out by other addresses: told in the kind's summary
                else:
                    pair[2] += 1
                    pair[3] = record
                keep = False
        for summary in summaries:
            self._emit(summary)
        return keep

    def flush(self) -> None:
        """Write what is still counted (at shutdown)."""
        with self._lock:
            summaries = self._sweep(float("inf"), force=True)
        for summary in summaries:
            self._emit(summary)

    def _sweep(self, now: float, force: bool = False) -> list[logging.LogRecord]:
        summaries = []
        for key, entry in list(self._pairs.items()):
            if force or now - entry[0] >= WINDOW:
                del self._pairs[key]
                if entry[2]:
                    summaries.append(_summary(entry[3], key[0], key[1], entry[2], min(now, self._clock()) - entry[0]))
        for kind, entry in list(self._kinds.items()):
            if force or now - entry[0] >= WINDOW:
                del self._kinds[kind]
                if entry[2]:
                    summaries.append(_summary(entry[3], kind, "", entry[2], min(now, self._clock()) - entry[0],
                                              other_addresses=True))
        return summaries


def _summary(model: logging.LogRecord, kind: str, address: str, count: int, seconds: float,
             other_addresses: bool = False) -> logging.LogRecord:
    who = "from further addresses" if other_addresses else (f"from {address}" if address else "")
    record = logging.LogRecord(model.name, model.levelno, model.pathname, model.lineno,
                               "%s %s: %d more left out in %.0f s (folded)",
                               (kind, who, count, max(seconds, 0.0)), None)
    record.event = getattr(model, "event", "") or kind  # type: ignore[attr-defined]
    if getattr(model, "verdict", ""):
        record.verdict = model.verdict  # type: ignore[attr-defined]
    for name in ("base",):
        if getattr(model, name, ""):
            setattr(record, name, getattr(model, name))
    if address:
        record.client = address  # type: ignore[attr-defined]
    record.folded = count  # type: ignore[attr-defined]
    record._folded = True  # type: ignore[attr-defined]
    return record
