"""Editing a list file from the console: read it with its encoding and line ends, check a new
text, and write it back the same way, atomically.

The watcher polls the file; the new text goes to a temporary file in the same folder that is
renamed over the old one, so it never reads half a list. The encoding (UTF-8 with or without
BOM, UTF-16 LE/BE with BOM, or the "ANSI" code page cp1251) and the line ends (CRLF, LF or CR)
are those the file had, so Notepad and the seed's own tools still read it as before.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from gateway.utils.files import atomic_write
from gateway.iplist.files import read_list_bytes
from gateway.iplist.parse import LineError, parse_text

LIST_MODE = 0o644
# A new list gets what Notepad writes on current Windows, and what the seed's lists use.
NEW_ENCODING = "utf-8"
NEW_NEWLINE = "\r\n"


@dataclass(frozen=True)
class ListFile:
    path: Path
    text: str  # line ends as "\n"
    encoding: str  # "utf-8", "utf-8-sig", "utf-16-le", "utf-16-be" or "cp1251"
    newline: str  # "\r\n", "\n" or "\r"
    present: bool

    def lines(self) -> list[str]:
        return self.text.split("\n")


def _newline_of(text: str) -> str:
    if "\r\n" in text:
        return "\r\n"
    if "\r" in text:
        return "\r"
    return "\n" if "\n" in text else NEW_NEWLINE


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if data.startswith(codecs.BOM_UTF16_LE):
        return data[2:].decode("utf-16-le", errors="replace"), "utf-16-le"
    if data.startswith(codecs.BOM_UTF16_BE):
        return data[2:].decode("utf-16-be", errors="replace"), "utf-16-be"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        # Not UTF-8: an "ANSI" file of a Russian Windows. Every byte maps, so saving it again
        # gives back the same bytes for the lines nobody touched.
        return data.decode("cp1251", errors="replace"), "cp1251"


def normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_list_file(path: Path) -> ListFile:
    """Raises ListUnreadable (files.py) for a file that exists but cannot be read."""
    data = read_list_bytes(path)
    if data is None:
        return ListFile(path, "", NEW_ENCODING, NEW_NEWLINE, present=False)
    text, encoding = _decode(data)
    return ListFile(path, normalise(text), encoding, _newline_of(text), present=True)


def check_text(text: str) -> list[LineError]:
    """The bad lines of a proposed list, numbered as the saved file will number them."""
    return parse_text(normalise(text)).errors


def encode_text(text: str, like: ListFile) -> bytes:
    body = normalise(text).replace("\n", like.newline)
    if like.encoding == "utf-8-sig":
        return codecs.BOM_UTF8 + body.encode("utf-8")
    if like.encoding == "utf-16-le":
        return codecs.BOM_UTF16_LE + body.encode("utf-16-le")
    if like.encoding == "utf-16-be":
        return codecs.BOM_UTF16_BE + body.encode("utf-16-be")
    if like.encoding == "cp1251":
        return body.encode("cp1251", errors="replace")
    return body.encode("utf-8")


def save_list_file(like: ListFile, text: str) -> None:
    """Write ``text`` to ``like.path`` in ``like``'s encoding and line ends, atomically."""
    atomic_write(like.path, encode_text(text, like), LIST_MODE)
