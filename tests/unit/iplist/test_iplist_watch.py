"""Hot reload of list files: changes, deletions, unreadable files, and what gets logged."""

from __future__ import annotations

import codecs
import logging
import os
from pathlib import Path

import pytest

from gateway.iplist.files import ListUnreadable
from gateway.iplist.parse import V4
from gateway.iplist.watch import MAX_LOGGED_ERRORS, ListWatcher

A1 = 0x0A000001  # 10.0.0.1
A2 = 0x0A000002
LATER = 4_000_000_000.0  # a clock long after every file's mtime: nothing is "racy"


def write(path: Path, text: str, mtime_ns: int | None = None) -> None:
    path.write_text(text, encoding="utf-8")
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "blacklist.dat"
    write(p, "10.0.0.1\n", 1_000_000_000_000_000_000)
    return p


def test_unchanged_file_is_not_reloaded(path: Path) -> None:
    watcher = ListWatcher(clock=lambda: LATER)
    watcher.track([path])
    first = watcher.get(path)
    assert watcher.poll() == [] and watcher.get(path) is first


def test_saved_change_takes_effect(path: Path) -> None:
    watcher = ListWatcher(clock=lambda: LATER)
    watcher.track([path])
    write(path, "10.0.0.2\n10.0.0.3\n", 1_000_000_001_000_000_000)
    assert watcher.poll() == [path]
    assert watcher.get(path).find(V4, A1) is None and watcher.get(path).find(V4, A2) == 1


def test_same_size_rewrite_within_one_mtime_tick_is_still_seen(path: Path) -> None:
    mtime = 1_000_000_000_000_000_000
    watcher = ListWatcher(clock=lambda: mtime / 1e9 + 0.1)  # read right after it was written
    watcher.track([path])
    write(path, "10.0.0.2\n", mtime)                         # same size, same mtime
    assert watcher.poll() == [path]
    assert watcher.get(path).find(V4, A2) == 1


def test_deleted_file_becomes_an_empty_list_logged_once(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    watcher = ListWatcher(clock=lambda: LATER)
    watcher.track([path])
    path.unlink()
    with caplog.at_level(logging.INFO, logger="gateway.ipfilter"):
        assert watcher.poll() == [path]
        assert watcher.poll() == []
    assert watcher.get(path).find(V4, A1) is None and not watcher.get(path).present
    assert [r.message for r in caplog.records].count(f"IP list {path} was deleted: it is now an empty list") == 1
    write(path, "10.0.0.2\n")                                # and it can come back
    assert watcher.poll() == [path] and watcher.get(path).find(V4, A2) == 1


def test_unreadable_file_keeps_the_last_good_version(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    watcher = ListWatcher(clock=lambda: LATER)
    watcher.track([path])
    # Half a UTF-16 character: what a reader may see while an editor is still writing.
    path.write_bytes(codecs.BOM_UTF16_LE + "10.0.0.2".encode("utf-16-le") + b"\x00")
    with caplog.at_level(logging.INFO, logger="gateway.ipfilter"):
        assert watcher.poll() == []
        assert watcher.poll() == []
    assert watcher.get(path).find(V4, A1) == 1                      # the old list still applies
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and str(path) in errors[0].getMessage() and "previous version" in errors[0].getMessage()
    path.write_bytes(codecs.BOM_UTF16_LE + "10.0.0.2\r\n".encode("utf-16-le"))
    assert watcher.poll() == [path] and watcher.get(path).find(V4, A2) == 1


def test_file_turned_into_a_folder_keeps_the_last_good_version(path: Path) -> None:
    watcher = ListWatcher(clock=lambda: LATER)
    watcher.track([path])
    path.unlink()
    path.mkdir()
    assert watcher.poll() == [] and watcher.get(path).find(V4, A1) == 1


def test_bad_lines_are_logged_once_per_change_not_per_poll(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    watcher = ListWatcher(clock=lambda: LATER)
    watcher.track([path])
    write(path, "10.0.0.1\nnot-an-address\n10.0.0.2\n", 1_000_000_005_000_000_000)
    with caplog.at_level(logging.INFO, logger="gateway.ipfilter"):
        watcher.poll()
        watcher.poll()
        watcher.poll()
    bad = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(bad) == 1 and bad[0].startswith(f"{path}:2: ")
    assert watcher.get(path).find(V4, A2) == 3                      # the rest of the list applies


def test_a_flood_of_bad_lines_is_summarised(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    watcher = ListWatcher(clock=lambda: LATER)
    watcher.track([path])
    write(path, "bad\n" * (MAX_LOGGED_ERRORS + 5), 1_000_000_005_000_000_000)
    with caplog.at_level(logging.INFO, logger="gateway.ipfilter"):
        watcher.poll()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == MAX_LOGGED_ERRORS + 1 and "5 more bad line(s)" in warnings[-1]


def test_tracking_a_new_unreadable_file_refuses_and_changes_nothing(path: Path, tmp_path: Path) -> None:
    watcher = ListWatcher(clock=lambda: LATER)
    watcher.track([path])
    folder = tmp_path / "whitelist.dat"
    folder.mkdir()
    with pytest.raises(ListUnreadable, match="whitelist.dat"):
        watcher.track([path, folder])
    assert [c.path for c in watcher.all()] == [path]


def test_files_no_longer_named_are_forgotten_and_kept_ones_not_reread(path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.dat"
    write(other, "10.0.0.2\n")
    watcher = ListWatcher(clock=lambda: LATER)
    watcher.track([path, other])
    kept = watcher.get(path)
    watcher.track([path])
    assert watcher.get(path) is kept and [c.path for c in watcher.all()] == [path]
