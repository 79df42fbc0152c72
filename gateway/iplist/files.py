"""Reading a list file the way Notepad may have saved it.

Notepad writes UTF-8 (with or without a BOM), "Unicode" (UTF-16 LE with a BOM), "Unicode big
endian" (UTF-16 BE with a BOM) and, on older Windows, "ANSI" (e.g. cp1251). Addresses are
ASCII in all of them; only comments can hold other characters. So UTF-8 that does not decode
is read with replacement characters: a comment in cp1251 is harmless, and an entry line with
such bytes is reported as a bad line by the parser, while the rest of the list applies.
"""

from __future__ import annotations

import codecs
from pathlib import Path

# Text files of a few hundred MB are not lists anyone maintains by hand; refuse rather than
# let a wrong path (a log, a database) eat the gateway's memory.
MAX_LIST_BYTES = 256 * 1024 * 1024


class ListUnreadable(Exception):
    """The file exists but cannot be read or decoded; the message names the file and the fix."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def read_list_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None if there is no such file (an absent list is an empty list)."""
    try:
        size = path.stat().st_size
        if size > MAX_LIST_BYTES:
            raise ListUnreadable(path, f"is {size // (1024 * 1024)} MB, larger than the {MAX_LIST_BYTES // (1024 * 1024)} MB "
                                       "a list may have; is this the right file?")
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ListUnreadable(path, "is a folder, not a file; a list is a text file") from None
    except PermissionError:
        raise ListUnreadable(path, "cannot be read: permission denied (or the file is locked by another "
                                   "program); give the gateway's account read access") from None
    except OSError as e:
        raise ListUnreadable(path, f"cannot be read: {e.strerror or e}") from None


def decode_list(data: bytes, path: Path) -> str:
    """Bytes in any of Notepad's encodings → text (BOM removed)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith(codecs.BOM_UTF16_LE):
        return _utf16(data[2:], "utf-16-le", path)
    if data.startswith(codecs.BOM_UTF16_BE):
        return _utf16(data[2:], "utf-16-be", path)
    if b"\x00" in data[:4096]:
        # UTF-16 without a BOM (written by scripts, not Notepad): an ASCII character has its
        # zero byte second in little-endian and first in big-endian.
        zero_first = data[0:1] == b"\x00"
        return _utf16(data, "utf-16-be" if zero_first else "utf-16-le", path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace")


def _utf16(data: bytes, encoding: str, path: Path) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        # Half a character: most likely the file is being written right now; the watcher keeps
        # the previous version and reads it again on the next change.
        raise ListUnreadable(path, f"is not valid {encoding.upper()} text at byte {e.start}; "
                                   "save it again as UTF-8 or Unicode") from None
