"""Columns for the CLI's lists, as wide as their longest value: a long name (a Cyrillic one is
as long in letters as in columns) never pushes the rest of its row out of line. Every cell is
shown escaped (gateway.utils.display): a name with control or bidirectional characters cannot
reorder or overwrite the table."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from gateway.utils.display import shown


def width(text: str) -> int:
    """Terminal columns: East Asian wide letters take two, combining marks none."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def render(header: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> list[str]:
    """Lines of a table; the last column is not padded. ``right``: indexes of right-aligned columns."""
    cells = [[str(c) for c in header]] + [[shown(c) for c in row] for row in rows]
    widths = [max(width(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - width(cell))
            if i == len(row) - 1 and i not in right:
                parts.append(cell)
            else:
                parts.append(pad + cell if i in right else cell + pad)
        lines.append("  ".join(parts).rstrip())
    return lines
