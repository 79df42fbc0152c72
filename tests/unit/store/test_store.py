import multiprocessing
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from gateway.store import SqliteStore, Store, StoreError, open_store

# The behaviour every store shares (users, groups, credentials, sessions, failures) is tested
# against SQLite and Redis alike in tests/test_store_redis.py; here: what is SQLite's own.


def _hammer(path: str, key: str, count: int) -> None:
    store = SqliteStore(Path(path))
    for i in range(count):
        store.add_failure(key, 1000.0 + i, 0.0)
    store.close()


def test_two_processes_share_one_count(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    SqliteStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_hammer, args=(str(path), "ip:127.0.0.2", 150)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert len(SqliteStore(path).failure_times("ip:127.0.0.2", 0.0)) == 450


def test_wal_mode_and_private_file(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    assert isinstance(store, Store)
    conn = sqlite3.connect(tmp_path / "gateway.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    if sys.platform != "win32":
        assert stat.S_IMODE((tmp_path / "gateway.db").stat().st_mode) == 0o600


def test_a_broken_database_raises_store_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    sqlite3.connect(tmp_path / "gateway.db").execute("DROP TABLE failures")
    with pytest.raises(StoreError, match="no such table"):
        store.failure_times("ip:127.0.0.1", 0.0)
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        SqliteStore(tmp_path / "junk.db")


def test_version_sees_another_process_write(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = SqliteStore(path)
    before = store.version()
    assert store.version() == before  # nothing written: the same value
    ctx = multiprocessing.get_context("spawn")
    worker = ctx.Process(target=_hammer, args=(str(path), "ip:127.0.0.2", 1))
    worker.start()
    worker.join(60)
    assert worker.exitcode == 0
    assert store.version() != before
