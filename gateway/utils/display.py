"""Text from outside (user names typed at a login prompt, group names, addresses) made safe to
print in a terminal table: control characters and the Unicode bidirectional controls are shown
escaped (``\\u202e``), so a name cannot reorder, hide or overwrite what the table shows."""

from __future__ import annotations

import unicodedata

# Bidirectional embeddings, overrides and isolates, and the invisible marks beside them.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def shown(text: object) -> str:
    out = []
    for char in str(text):
        if char in _BIDI or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)
