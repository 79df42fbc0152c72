"""A change counter shared by every process using one state folder: a small memory-mapped file.

The request path of a Basic-auth base asks the store "has anything changed since I cached this
login?" on every request. ``PRAGMA data_version`` answers it exactly but costs a read transaction
each time (the largest item of a cached login, docs/PERFORMANCE.md). Here every writer bumps the
counter *after* its commit, under an exclusive lock on the file so that no bump is lost, and a
reader compares one integer read from shared memory. Bumping after the commit is what keeps
caches exact: a reader that sees the new number reads the new data; one that still sees the old
number caches what it read under the old number, which the bump then invalidates.

A torn read of the eight bytes (never seen on the platforms we run on, but not promised by
Python) can only yield a number that differs from both — a cache miss, never a stale hit.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from pathlib import Path

SIZE = 8
_FORMAT = "<Q"

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_LOCK, SIZE)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, SIZE)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.lockf(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.lockf(fd, fcntl.LOCK_UN)


class ChangeCounter:
    """``value()`` moves after every ``bump()`` of any process sharing ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
        self._fd = os.open(self.path, flags, 0o600)
        try:
            if os.fstat(self._fd).st_size < SIZE:
                _lock(self._fd)  # two processes creating it at once: one writes the zeros
                try:
                    if os.fstat(self._fd).st_size < SIZE:
                        os.pwrite(self._fd, bytes(SIZE), 0) if hasattr(os, "pwrite") else os.write(self._fd, bytes(SIZE))
                finally:
                    _unlock(self._fd)
            self._map = mmap.mmap(self._fd, SIZE)
            # One indexing operation per read (the request path's change check): the eight bytes
            # seen as one native unsigned integer, which is the file's little-endian layout only on
            # a little-endian machine; elsewhere struct reads it.
            self._view: memoryview | None = memoryview(self._map).cast("Q") if sys.byteorder == "little" else None
        except BaseException:
            os.close(self._fd)
            raise

    def value(self) -> int:
        view = self._view
        if view is not None:
            return view[0]  # type: ignore[no-any-return]
        return int(struct.unpack_from(_FORMAT, self._map)[0])

    def bump(self) -> None:
        _lock(self._fd)
        try:
            struct.pack_into(_FORMAT, self._map, 0, (self.value() + 1) & 0xFFFF_FFFF_FFFF_FFFF)
        finally:
            _unlock(self._fd)

    def close(self) -> None:
        """A read racing with close raises ValueError (a released view or a closed map)."""
        try:
            if self._view is not None:
                self._view.release()
            self._map.close()
        finally:
            os.close(self._fd)
