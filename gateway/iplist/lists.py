"""One list file compiled for lookups: its intervals per family, its entry count, its bad lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.iplist.files import decode_list, read_list_bytes
from gateway.iplist.intervals import EMPTY, IntervalSet
from gateway.iplist.parse import BITS, V4, V6, LineError, parse_text


@dataclass(frozen=True)
class CompiledList:
    path: Path
    v4: IntervalSet = EMPTY
    v6: IntervalSet = EMPTY
    entries: int = 0
    errors: tuple[LineError, ...] = ()
    present: bool = True  # False: there is no such file, which means an empty list

    def find(self, family: int, value: int) -> int | None:
        """The number of a line covering the address, or None."""
        return (self.v4 if family == V4 else self.v6).find(value)

    def describe(self) -> str:
        if not self.present:
            return f"{self.path}: no such file (empty list)"
        bad = f", {len(self.errors)} bad line(s)" if self.errors else ""
        return f"{self.path}: {self.entries} entr{'y' if self.entries == 1 else 'ies'}{bad}"


def compile_text(text: str, path: Path) -> CompiledList:
    parsed = parse_text(text)
    return CompiledList(path=path, v4=IntervalSet.build(parsed.v4, BITS[V4]),
                        v6=IntervalSet.build(parsed.v6, BITS[V6]),
                        entries=parsed.entries, errors=tuple(parsed.errors))


def load_list(path: Path) -> CompiledList:
    """Read and compile a list file. Raises ListUnreadable; a missing file is an empty list."""
    data = read_list_bytes(path)
    if data is None:
        return CompiledList(path=path, present=False)
    return compile_text(decode_list(data, path), path)
