"""One log file, several writing processes: they append, one process rotates.

With worker processes every process writes the same ``log.file`` (and its security log). A
``RotatingFileHandler`` in each would rotate on its own: one renames the file while others
still write to the renamed one and rotate it again, so lines land out of place or are dropped
with a backup that another process just pushed out. Here the workers only append (``O_APPEND``
keeps each line whole) and reopen the file when it was renamed under them
(``WatchedFileHandler``); the supervisor alone checks the sizes and rotates. A line written
between a rename and a worker's next write goes to the just-rotated file: late, never lost.
"""

from __future__ import annotations

import logging.handlers
import os
from pathlib import Path


# Logs hold client addresses and failed user names (people type passwords into the name field):
# the owner and the group (an operator's log reader) may read them, nobody else.
LOG_FILE_MODE = 0o640
LOG_FOLDER_MODE = 0o750


def open_log_file(path: str | Path, mode: str, encoding: str | None, errors: str | None = None) -> object:
    """``open()`` for a log, created 0640 whatever the umask, and narrowed to 0640 if it was wider."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, LOG_FILE_MODE)
    if os.name == "posix":
        try:
            if os.fstat(fd).st_mode & 0o777 & ~LOG_FILE_MODE:
                os.fchmod(fd, LOG_FILE_MODE)
        except OSError:
            pass  # not ours to change (another owner): leave it as the administrator set it
    return open(fd, mode, encoding=encoding, errors=errors)


def make_log_folder(folder: Path) -> None:
    """The log folder, created owner and group only (an existing one is the administrator's)."""
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True, mode=LOG_FOLDER_MODE)
        if os.name == "posix":
            os.chmod(folder, LOG_FOLDER_MODE)  # mkdir's mode passes through the umask


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A single process's rotating log, each new file 0640."""

    def _open(self):  # type: ignore[no-untyped-def]
        return open_log_file(self.baseFilename, self.mode, self.encoding, self.errors)


class SharedFileHandler(logging.handlers.WatchedFileHandler):
    """Appends only; follows the file to its new inode after another process rotated it."""

    def _open(self):  # type: ignore[no-untyped-def]
        return open_log_file(self.baseFilename, self.mode, self.encoding, self.errors)


def backup_name(path: Path, number: int) -> Path:
    return path.with_name(f"{path.name}.{number}")


def rotate_if_needed(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` like ``RotatingFileHandler`` does (``.1`` newest) once it passed ``max_bytes``."""
    try:
        if max_bytes <= 0 or path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    if backups <= 0:
        # No backups wanted: start the file over; writers keep appending at its new end.
        with open(path, "r+b") as f:
            f.truncate(0)
        return True
    for number in range(backups - 1, 0, -1):
        older = backup_name(path, number)
        if older.exists():
            os.replace(older, backup_name(path, number + 1))
    os.replace(path, backup_name(path, 1))
    # Created at once, so a reader (tail -F, the console) never finds the log missing.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, LOG_FILE_MODE))
    return True
