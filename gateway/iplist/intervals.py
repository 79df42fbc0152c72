"""Sorted, disjoint address intervals searched by bisection, each remembering a line that covers it.

A list compiles to one ``IntervalSet`` per address family. Overlapping entries are cut into
disjoint pieces so a lookup is one bisection; every piece keeps the number of an original line
that covers *all* of it, so "which line matched" is always a true answer (when several lines
cover an address, the one starting lowest — then the widest, then the earliest — is named).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import Iterator, MutableSequence

from gateway.iplist.parse import LINE_BITS, LINE_MASK

# An IPv4 set is stored in arrays of 64-bit numbers: a million pieces take ~24 MB instead of
# ~100 MB as lists of int objects.


class IntervalSet:
    __slots__ = ("_starts", "_ends", "_lines")

    def __init__(self, starts: MutableSequence[int], ends: MutableSequence[int], lines: MutableSequence[int]) -> None:
        self._starts = starts
        self._ends = ends
        self._lines = lines

    @classmethod
    def build(cls, packed: list[int], bits: int) -> IntervalSet:
        """``packed`` spans (see ``parse.pack``) of ``bits``-bit addresses, any order; sorted in place."""
        packed.sort()
        value_mask = (1 << bits) - 1
        start_shift = bits + LINE_BITS
        # Pieces of IPv4 sets go straight into compact arrays; IPv6 values need 128 bits.
        compact = bits <= 64
        starts: MutableSequence[int] = array("Q") if compact else []
        ends: MutableSequence[int] = array("Q") if compact else []
        lines: MutableSequence[int] = array("Q") if compact else []
        if packed:
            first = packed[0]
            cur_start, cur_end, cur_line = first >> start_shift, (first >> LINE_BITS) & value_mask, first & LINE_MASK
            for span in packed:
                end = (span >> LINE_BITS) & value_mask
                if end <= cur_end:
                    continue  # inside the current piece, whose line covers it too
                start = span >> start_shift
                if start == cur_start:
                    # Sorted by start then end: a later span with the same start is wider and
                    # covers the whole current piece, so it takes the piece over.
                    cur_end, cur_line = end, span & LINE_MASK
                    continue
                starts.append(cur_start)
                ends.append(cur_end)
                lines.append(cur_line)
                # The new span begins inside or right after the current piece, or after a gap;
                # either way it covers everything from there to its own end.
                cur_start = cur_end + 1 if start <= cur_end else start
                cur_end, cur_line = end, span & LINE_MASK
            starts.append(cur_start)
            ends.append(cur_end)
            lines.append(cur_line)
        return cls(starts, ends, lines)

    def find(self, value: int) -> int | None:
        """The line number of an entry covering ``value``, or None."""
        index = bisect_right(self._starts, value) - 1
        if index >= 0 and value <= self._ends[index]:
            return self._lines[index]
        return None

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return zip(self._starts, self._ends, self._lines)

    def addresses(self) -> int:
        """How many addresses the set covers (for the CLI's summary)."""
        return sum(end - start + 1 for start, end in zip(self._starts, self._ends))


EMPTY = IntervalSet(array("Q"), array("Q"), array("Q"))
