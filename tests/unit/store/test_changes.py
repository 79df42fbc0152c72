"""The shared change counter behind ``SqliteStore.version()`` (issue 22): no bump is lost when
processes write at once, and a commit is visible to another process's reader at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from gateway.store.base import Group, User
from gateway.store.changes import ChangeCounter
from gateway.store.sqlite import SqliteStore


def _bump(path: str, count: int) -> None:
    counter = ChangeCounter(Path(path))
    for _ in range(count):
        counter.bump()
    counter.close()


def test_bumps_from_several_processes_are_all_counted(tmp_path: Path) -> None:
    path = tmp_path / "gateway.changes"
    reader = ChangeCounter(path)
    assert reader.value() == 0
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_bump, args=(str(path), 400)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert reader.value() == 1200  # read through the reader's own mapping, no re-open
    reader.close()


def _change_password(path: str) -> None:
    store = SqliteStore(Path(path))
    store.put_group(Group("g1", "g", "mobile", ()))
    store.add_user(User("u1", "u", "g1"), ())
    store.close()


def test_a_commit_in_another_process_moves_the_version_and_the_data_is_there(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = SqliteStore(path)
    before = store.version()
    assert store.version() == before
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=_change_password, args=(str(path),))
    writer.start()
    writer.join(60)
    assert writer.exitcode == 0
    after = store.version()
    assert after != before
    # The bump follows the commit: whoever sees the new number reads the new rows.
    assert store.find_user("u") is not None
    assert store.version() == after  # reading does not move it
    store.close()


def test_the_fast_read_is_the_files_little_endian_number(tmp_path: Path) -> None:
    path = tmp_path / "gateway.changes"
    counter = ChangeCounter(path)
    for _ in range(3):
        counter.bump()
    path.write_bytes((2**40 + 7).to_bytes(8, "little"))  # what another writer's bytes look like
    assert counter.value() == 2**40 + 7
    counter.close()


def test_a_version_read_after_the_counter_closed_fails_closed(tmp_path: Path) -> None:
    import pytest

    from gateway.store.base import StoreUnavailable

    store = SqliteStore(tmp_path / "gateway.db")
    store.version()
    counter = store._changes
    assert counter is not None
    counter.close()  # as a reopen does under a request in flight
    with pytest.raises(StoreUnavailable):
        store.version()
    store._changes = None  # closed above already
    store.close()
