"""The dashboard's per-minute numbers: workers summed, a day kept and no more, p95 from buckets."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.ops import minutes
from gateway.ops.minutes import MinuteCounts

NOW = 1_800_000_000.0  # a fixed clock: minute boundaries in the test do not depend on when it runs


def _counts(requests: int, verdict: str = "allowed", ms: float = 3.0, open_connections: int = 0) -> MinuteCounts:
    c = MinuteCounts()
    for _ in range(requests):
        c.add_request(verdict, ms)
    c.open_connections = open_connections
    return c


def test_workers_are_summed_and_flushes_add_up(tmp_path: Path) -> None:
    minute = minutes.minute_of(NOW)
    minutes.flush(tmp_path, "101", {(minute, "Склад"): _counts(3, open_connections=2)}, now=NOW)
    minutes.flush(tmp_path, "102", {(minute, "Склад"): _counts(4, "denied-auth", open_connections=1)}, now=NOW)
    minutes.flush(tmp_path, "101", {(minute, "Склад"): _counts(2, "throttled", open_connections=5)}, now=NOW)
    c = minutes.read(tmp_path, 60, now=NOW)["Склад"][-1]
    assert c.requests == 9
    assert c.refused == {"iplist": 0, "login": 4, "throttle": 2, "policy": 0, "limits": 0}
    # a gauge: each worker's latest value, summed over workers
    assert c.open_connections == 5 + 1
    assert sum(c.latency) == 9


def test_reads_are_per_minute_oldest_first_and_a_day_is_kept(tmp_path: Path) -> None:
    minute = minutes.minute_of(NOW)
    minutes.flush(tmp_path, "1", {(minute - 2 * 24 * 60, "b"): _counts(7)}, now=NOW - 2 * 86400)
    minutes.flush(tmp_path, "1", {(minute - 10, "b"): _counts(1), (minute, "b"): _counts(2)}, now=NOW)
    series = minutes.read(tmp_path, 60, now=NOW)["b"]
    assert len(series) == 60 and series[-1].requests == 2 and series[-11].requests == 1
    assert sum(c.requests for c in series) == 3
    with sqlite3.connect(tmp_path / minutes.FILE_NAME) as db:
        oldest = db.execute("SELECT MIN(minute) FROM minutes").fetchone()[0]
    assert oldest == minute - 10  # the two-day-old row was deleted by the later flush


def test_p95_comes_from_the_summed_buckets() -> None:
    c = _counts(94, ms=3)
    for _ in range(6):
        c.add_request("allowed", 900)
    assert c.p95_ms() == 1000.0  # the 95th of 100 requests fell in the ≤1000 ms bucket
    assert _counts(100, ms=3).p95_ms() == 5.0
    assert MinuteCounts().p95_ms() is None


def test_a_missing_file_reads_as_no_traffic(tmp_path: Path) -> None:
    assert minutes.read(tmp_path / "nothing-here", 60, now=NOW) == {}
    # a lost state folder is not made again by a flush: /readyz must still see it gone
    try:
        minutes.flush(tmp_path / "nothing-here", "1", {(1, "b"): _counts(1)}, now=NOW)
    except FileNotFoundError as e:
        assert "nothing-here" in str(e)
    else:
        raise AssertionError("a flush into a missing state folder succeeded")
    assert not (tmp_path / "nothing-here").exists()
