"""The dashboard's numbers: a few counters per base and minute, kept for a day in the state folder.

Each gateway process (worker) adds what it counted since its last flush to its own row of the
minute (``minutes.sqlite3``, WAL, next to the other state), so readers sum the workers and a
restart loses at most one flush interval. The file stays small: rows older than ``KEEP_MINUTES``
are deleted at each flush (about 1440 rows a base and worker). With several machines each keeps
its own file, so the console shows the machine it runs on. Latency is kept as counts per bucket,
so the p95 of several workers is computed from their summed counts, not averaged.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

FILE_NAME = "minutes.sqlite3"
KEEP_MINUTES = 24 * 60 + 5
# Refusals by reason, as the dashboard groups them; the access log's verdicts map onto them.
REASONS = ("iplist", "login", "throttle", "policy", "limits")
VERDICT_REASON = {"denied-auth": "login", "throttled": "throttle", "denied-policy": "policy",
                  "denied-limit": "limits", "bad-request": "limits", "denied-https": "policy"}
# Upper bounds in milliseconds; the last bucket is everything slower.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
COLUMNS = ("requests", *(f"refused_{r}" for r in REASONS), "failed_logins")


def minute_of(now: float) -> int:
    return int(now // 60)


@dataclass
class MinuteCounts:
    requests: int = 0
    refused: dict[str, int] = field(default_factory=lambda: {r: 0 for r in REASONS})
    failed_logins: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    open_connections: int = 0

    def add_request(self, verdict: str, duration_ms: float) -> None:
        self.requests += 1
        reason = VERDICT_REASON.get(verdict)
        if reason is not None:
            self.refused[reason] += 1
        index = next((i for i, bound in enumerate(LATENCY_BUCKETS_MS) if duration_ms <= bound),
                     len(LATENCY_BUCKETS_MS))
        self.latency[index] += 1

    def add_refused_connection(self) -> None:
        """A connection the IP lists refused before any request."""
        self.refused["iplist"] += 1

    def p95_ms(self) -> float | None:
        total = sum(self.latency)
        if not total:
            return None
        wanted = 0.95 * total
        seen = 0
        for i, count in enumerate(self.latency):
            seen += count
            if seen >= wanted:
                return float(LATENCY_BUCKETS_MS[min(i, len(LATENCY_BUCKETS_MS) - 1)])
        return float(LATENCY_BUCKETS_MS[-1])


def _connect(state_dir: Path) -> sqlite3.Connection:
    path = Path(state_dir) / FILE_NAME
    if not path.parent.is_dir():
        # Never made here: a state folder that vanished is "state lost" (/readyz), not a fresh one.
        raise FileNotFoundError(f"the state folder {path.parent} does not exist")
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS minutes (minute INTEGER, base TEXT, worker TEXT, "
               + ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in COLUMNS)
               + ", latency TEXT NOT NULL DEFAULT '', open_connections INTEGER NOT NULL DEFAULT 0, "
               "PRIMARY KEY (minute, base, worker))")
    return db


def flush(state_dir: Path, worker: str, counts: dict[tuple[int, str], MinuteCounts], now: float | None = None) -> None:
    """Add one worker's counts (by (minute, base)) to the file and drop minutes older than a day."""
    now = time.time() if now is None else now
    db = _connect(state_dir)
    try:
        db.execute("BEGIN IMMEDIATE")
        for (minute, base), c in counts.items():
            row = db.execute("SELECT latency FROM minutes WHERE minute=? AND base=? AND worker=?",
                             (minute, base, worker)).fetchone()
            latency = list(c.latency)
            if row and row[0]:
                latency = [a + int(b) for a, b in zip(latency, row[0].split(","))]
            values = (c.requests, *(c.refused[r] for r in REASONS), c.failed_logins)
            db.execute(
                f"INSERT INTO minutes (minute, base, worker, {', '.join(COLUMNS)}, latency, open_connections) "
                f"VALUES (?, ?, ?, {', '.join('?' * len(COLUMNS))}, ?, ?) ON CONFLICT (minute, base, worker) DO UPDATE SET "
                + ", ".join(f"{col} = {col} + excluded.{col}" for col in COLUMNS)
                + ", latency = excluded.latency, open_connections = excluded.open_connections",
                (minute, base, worker, *values, ",".join(map(str, latency)), c.open_connections))
        db.execute("DELETE FROM minutes WHERE minute < ?", (minute_of(now) - KEEP_MINUTES,))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    finally:
        db.close()


def read(state_dir: Path, minutes: int, now: float | None = None) -> dict[str, list[MinuteCounts]]:
    """Base name → one MinuteCounts a minute, oldest first, the last ``minutes`` up to now, workers summed."""
    now = time.time() if now is None else now
    last = minute_of(now)
    first = last - minutes + 1
    if not (Path(state_dir) / FILE_NAME).exists():
        return {}
    db = _connect(state_dir)
    try:
        rows = db.execute(f"SELECT minute, base, {', '.join(COLUMNS)}, latency, open_connections FROM minutes "
                          "WHERE minute BETWEEN ? AND ?", (first, last)).fetchall()
    finally:
        db.close()
    found: dict[str, list[MinuteCounts]] = {}
    for minute, base, *rest in rows:
        series = found.setdefault(base, [MinuteCounts() for _ in range(minutes)])
        c = series[minute - first]
        c.requests += rest[0]
        for n, reason in enumerate(REASONS):
            c.refused[reason] += rest[1 + n]
        c.failed_logins += rest[1 + len(REASONS)]
        if rest[-2]:
            c.latency = [a + int(b) for a, b in zip(c.latency, rest[-2].split(","))]
        c.open_connections += rest[-1]
    return found
