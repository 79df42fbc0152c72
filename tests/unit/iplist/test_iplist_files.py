"""List files as Notepad saves them: every encoding and line end reads the same entries."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from gateway.iplist.files import ListUnreadable, decode_list, read_list_bytes
from gateway.iplist.lists import load_list
from gateway.iplist.parse import V4, V6

TEXT = "# склад № 3\r\n192.168.1.1\r\n\r\n  192.198.0.0/16\t\r\n192.198.0.1 - 192.198.0.100 ; диапазон\r\n2001:db8::/32\r\n"


@pytest.mark.parametrize("encoded", [
    TEXT.encode("utf-8"),
    codecs.BOM_UTF8 + TEXT.encode("utf-8"),
    codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"),
    codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
    TEXT.encode("utf-16-le"),                           # no BOM: written by a script
    TEXT.encode("utf-16-be"),
    TEXT.replace("\r\n", "\n").encode("utf-8"),
    TEXT.replace("\r\n", "\r").encode("utf-8"),         # old Mac line ends
    TEXT.encode("cp1251"),                              # Notepad's "ANSI" on a Russian Windows
], ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom", "utf16le", "utf16be", "lf", "cr", "ansi"])
def test_every_notepad_encoding_reads_the_same_entries(tmp_path: Path, encoded: bytes) -> None:
    path = tmp_path / "whitelist.dat"
    path.write_bytes(encoded)
    compiled = load_list(path)
    assert compiled.entries == 4 and not compiled.errors
    assert compiled.find(V4, 0xC0A80101) == 2                  # 192.168.1.1
    assert compiled.find(V4, 0xC0C60064) == 4                  # 192.198.0.100, inside the /16 of line 4
    assert compiled.find(V6, 0x20010DB8 << 96) == 6
    assert compiled.find(V4, 0xC0A80102) is None


def test_ansi_bytes_on_an_entry_line_make_that_line_bad_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "blacklist.dat"
    path.write_bytes("10.0.0.1\r\n10.0.0.2 — офис\r\n10.0.0.3\r\n".encode("cp1251"))
    compiled = load_list(path)
    assert compiled.entries == 2
    assert [e.line for e in compiled.errors] == [2]
    assert "UTF-8" in compiled.errors[0].reason


def test_missing_file_is_an_empty_list(tmp_path: Path) -> None:
    compiled = load_list(tmp_path / "nope.dat")
    assert not compiled.present and compiled.entries == 0 and compiled.find(V4, 1) is None


def test_folder_instead_of_file_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "blacklist.dat").mkdir()
    with pytest.raises(ListUnreadable, match="is a folder"):
        read_list_bytes(tmp_path / "blacklist.dat")


def test_broken_utf16_is_unreadable_naming_the_file() -> None:
    with pytest.raises(ListUnreadable, match=r"list\.dat.*UTF-16-LE"):
        decode_list(codecs.BOM_UTF16_LE + "10.0.0.1".encode("utf-16-le") + b"\x00", Path("list.dat"))


def test_empty_file_and_bom_only_file_are_empty_lists() -> None:
    assert decode_list(b"", Path("x")) == ""
    assert decode_list(codecs.BOM_UTF8, Path("x")) == ""
    assert decode_list(codecs.BOM_UTF16_LE, Path("x")) == ""
