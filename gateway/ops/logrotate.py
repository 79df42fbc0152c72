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


class SharedFileHandler(logging.handlers.WatchedFileHandler):
    """Appends only; follows the file to its new inode after another process rotated it."""


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
    path.touch()
    return True
