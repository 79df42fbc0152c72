"""Replace a file in one rename, so a reader (another process, a crash) sees the old content or
the new one, never half of it."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(
    path: Path,
    data: bytes | bytearray | memoryview | BinaryIO,
    mode: int | None = None,
    before_write: Callable[[Path], None] | None = None,
) -> None:
    """Replace ``path`` with ``data`` in one rename. With ``mode`` the file is created with it
    from the start (a key is never readable by others even for a moment); without, the umask's
    default applies. ``data`` may be a file object (read from its start). The temporary file is
    unique per call, so concurrent writers never share it. ``before_write`` gets the empty
    temporary file first (a Windows ACL is cut down before a byte of a secret lands in it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode is not None:
                os.chmod(temporary, mode)  # os.open's mode is filtered by the umask
            if before_write is not None:
                before_write(temporary)
            if isinstance(data, (bytes, bytearray, memoryview)):
                handle.write(data)
            else:
                data.seek(0)
                shutil.copyfileobj(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    atomic_write(path, text.encode("utf-8"), mode)
