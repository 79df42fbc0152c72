import multiprocessing
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from gateway.store import (
    Credential, DuplicateError, Group, SessionRecord, SqliteStore, Store, StoreError, User, open_store,
)

KEY_A, KEY_B = "a" * 64, "b" * 64


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


def _group(gid: str = "1", name: str = "Операторы ТСД") -> Group:
    return Group(id=gid, name=name, role="mobile", doc_types=("Приход",))


def test_users_groups_and_the_unique_credential_index(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    store.put_group(_group())
    with pytest.raises(DuplicateError, match="already exists"):
        store.put_group(_group("2", "операторы тсд"))  # names are unique regardless of case
    store.add_user(User("1", "Иванов", "1"), (Credential(KEY_A, "password", "$argon2id$x"),))
    with pytest.raises(DuplicateError, match="already in use"):
        store.add_user(User("2", "Петров", "1"), (Credential(KEY_A, "barcode", "$argon2id$y"),))
    assert store.get_user("2") is None  # the failed add left nothing behind
    with pytest.raises(DuplicateError, match="named"):
        store.add_user(User("3", "ИВАНОВ", "1"), (Credential(KEY_B, "password", "$argon2id$z"),))
    found = store.find_credential(KEY_A)
    assert found is not None and (found.user_id, found.kind) == ("1", "password")
    principal = store.principal("1")
    assert principal is not None and principal.group.doc_types == ("Приход",)
    with pytest.raises(DuplicateError, match="still has 1 user"):
        store.remove_group("1")


def test_credential_change_bumps_generation_and_ends_sessions(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    store.put_group(_group())
    store.add_user(User("1", "Иванов", "1"), (Credential(KEY_A, "password", "$argon2id$x"),))
    store.create_session("t" * 64, SessionRecord("1", 1, 2e9))
    store.set_credential("1", Credential(KEY_B, "password", "$argon2id$y"), "password")
    user = store.get_user("1")
    assert user is not None and user.generation == 2
    assert store.get_session("t" * 64) is None
    assert store.find_credential(KEY_A) is None
    store.remove_user("1")
    assert store.find_credential(KEY_B) is None


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
