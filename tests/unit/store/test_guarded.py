"""GuardedStore: a store that is down is reported once when it goes and once when it is back,
with the calls refused meanwhile counted; a store that failed to write is back only when a write works."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gateway.store import StoreError, StoreUnavailable
from gateway.store import guarded
from gateway.store.guarded import GuardedStore


class Flaky:
    """A stand-in store whose reads and writes fail while told to."""

    def __init__(self) -> None:
        self.reads_fail = self.writes_fail = False

    def version(self) -> int:
        if self.reads_fail:
            raise StoreUnavailable("the disk is gone")
        return 1

    def put_shared(self, name: str, value: str, ttl: float | None = None) -> None:
        if self.writes_fail:
            raise StoreUnavailable("database or disk is full")

    def reserve(self, *args: Any) -> str:
        if self.writes_fail:
            raise StoreUnavailable("database or disk is full")
        return "reserved"

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fresh_health(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guarded, "_health", {})
    monkeypatch.setattr(guarded, "RECONNECT_INTERVAL", 0.0)


def test_an_outage_is_one_error_and_one_info_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    inner = Flaky()
    store = GuardedStore("test-store", lambda: inner)
    store.connect()
    caplog.set_level(logging.INFO, "gateway.store")
    inner.reads_fail = True
    for _ in range(50):
        with pytest.raises(StoreUnavailable):
            store.version()
    assert guarded.problems() == ["test-store: the disk is gone"]
    inner.reads_fail = False
    assert store.version() == 1 and guarded.problems() == []
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0][0] == "ERROR" and "store down" in lines[0][1]
    assert lines[1][0] == "INFO" and "50 store call(s) failed meanwhile" in lines[1][1]


def test_a_failed_write_is_healed_by_a_write_not_by_a_read() -> None:
    inner = Flaky()
    store = GuardedStore("full-disk", lambda: inner)
    inner.writes_fail = True
    with pytest.raises(StoreUnavailable):
        store.reserve()
    assert store.version() == 1  # reads still work on a full disk ...
    assert not store.health.up  # ... which says nothing about room to record an attempt
    assert not store.probe()
    inner.writes_fail = False
    assert store.probe() and store.health.up


def test_an_unreachable_store_is_opened_later_but_a_wrong_one_is_refused_at_once() -> None:
    attempts: list[int] = []
    inner = Flaky()

    def opener() -> Flaky:
        attempts.append(1)
        if len(attempts) < 3:
            raise StoreUnavailable("connection refused")
        return inner

    store = GuardedStore("later", opener)
    store.connect()
    assert not store.health.up
    with pytest.raises(StoreUnavailable):
        store.version()
    assert store.version() == 1 and store.health.up and len(attempts) == 3

    def wrong() -> Flaky:
        raise StoreError("the HMAC key differs from the other gateways'")

    with pytest.raises(StoreError, match="HMAC key"):
        GuardedStore("wrong", wrong).connect()


def test_a_full_sqlite_disk_is_back_only_with_room_to_write(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk can still take a write that fits in pages SQLite already holds: the probe
    asks the disk for room before it takes the store for back, so /readyz does not flap."""
    from gateway.store import sqlite
    from gateway.store.sqlite import SqliteStore

    inner = SqliteStore(tmp_path / "gateway.db")
    store = GuardedStore("test-sqlite", lambda: inner)
    store.connect()
    store.health.failed(StoreUnavailable("database or disk is full"), writing=True)
    monkeypatch.setattr(sqlite, "ROOM_TO_WRITE", 1 << 62)  # no disk has this much free
    assert "bytes free" in inner.room_problem()
    assert store.probe() is False and guarded.problems() == ["test-sqlite: database or disk is full"]
    monkeypatch.setattr(sqlite, "ROOM_TO_WRITE", 1024)
    assert inner.room_problem() == ""
    assert store.probe() is True and guarded.problems() == []
    inner.close()
