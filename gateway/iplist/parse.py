"""One line of a whitelist/blacklist → the address span it names, or the reason it names none.

The files are written by hand (the seed says: in Notepad), so the parser is forgiving about
layout — blanks, tabs, comments, spaces around ``-`` — and strict about meaning: anything that
is not clearly an address, a mask or a range is an error naming the line and the fix, never a
guess. ``192.168.001.001`` is refused rather than read, because some tools read it as octal.

Speed matters (a million-line list must load in a few seconds), so addresses are converted
with ``socket.inet_pton`` and ``int.from_bytes``; ``ipaddress`` is used only to explain a line
that failed, and as the authority when the two disagree, so every platform reads a file alike.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field

V4 = 4
V6 = 6
BITS = {V4: 32, V6: 128}
# ::ffff:a.b.c.d — how a dual-stack socket shows an IPv4 client; such entries also cover a.b.c.d.
MAPPED_START = 0xFFFF << 32
MAPPED_END = MAPPED_START + (1 << 32) - 1

# Notepad and copy-paste leave these around entries; str.strip() alone keeps the BOM and ZWSP.
_BLANKS = " \t\r\n\x0b\x0c\xa0\ufeff\u200b"
_LEADING_ZERO = re.compile(r"(?:^|\.)0\d")
# A host name: dotted labels, one of which starts with a letter (so "1.2.3.4a" is not one).
_NAME = re.compile(r"^(?=[\w.-]*[^\W\d_])[\w.-]+$")  # a host name, in any script: letters, digits, . and -

_pton = socket.inet_pton
_from_bytes = int.from_bytes
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6


def _pton_accepts_leading_zeros() -> bool:
    try:
        _pton(_AF_INET, "010.1.1.1")
    except (OSError, ValueError):
        return False
    return True


# glibc refuses "010.1.1.1" itself; where inet_pton accepts it, every address with a 0 is
# checked again, so all platforms read a file alike.
_CHECK_LEADING_ZEROS = _pton_accepts_leading_zeros()


class EntryError(ValueError):
    """A line that is not an entry; the message says why and how to write it instead."""


@dataclass(frozen=True)
class LineError:
    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason} (the line reads {self.text!r})"


# A span is packed into one int, (start, end, line) from high bits to low, because sorting a
# million ints is ~4x faster than sorting a million tuples, and sorting dominates loading.
LINE_BITS = 32
LINE_MASK = (1 << LINE_BITS) - 1


def pack(family: int, start: int, end: int, line: int) -> int:
    return (((start << BITS[family]) | end) << LINE_BITS) | line


def unpack(family: int, packed: int) -> tuple[int, int, int]:
    """packed span → (start, end, line)."""
    bits = BITS[family]
    return packed >> (bits + LINE_BITS), (packed >> LINE_BITS) & ((1 << bits) - 1), packed & LINE_MASK


@dataclass
class ParsedText:
    """Packed spans per family (see ``pack``), ends inclusive, in file order."""

    v4: list[int] = field(default_factory=list)
    v6: list[int] = field(default_factory=list)
    entries: int = 0
    errors: list[LineError] = field(default_factory=list)

    def spans(self, family: int) -> list[tuple[int, int, int]]:
        return [unpack(family, packed) for packed in (self.v4 if family == V4 else self.v6)]


def parse_address(text: str) -> tuple[int, int]:
    """``"10.0.0.1"`` → ``(4, 167772161)``; an IPv6 zone id (``%eth0``) is dropped."""
    if ":" in text:
        host = text.partition("%")[0]
        try:
            return V6, _from_bytes(_pton(_AF_INET6, host), "big")
        except (OSError, ValueError):
            return V6, _explain(host, ipaddress.IPv6Address)
    try:
        packed = _pton(_AF_INET, text)
    except (OSError, ValueError):
        return V4, _explain(text, ipaddress.IPv4Address)
    if _CHECK_LEADING_ZEROS and "0" in text and _LEADING_ZERO.search(text):
        # Some platforms' inet_pton accept "010.1.1.1"; others read it as octal 8.1.1.1.
        return V4, _explain(text, ipaddress.IPv4Address)
    return V4, _from_bytes(packed, "big")


def parse_entry(text: str) -> tuple[int, int, int]:
    """One entry (already stripped of comments and blanks) → ``(family, start, end)``."""
    if "-" in text:
        if _NAME.match(text):
            # A host name such as "склад-пк": report it whole, before '-' cuts it into a "range".
            raise EntryError(_hint(text))
        return _range(text)
    if "/" in text:
        return _mask(text)
    family, value = parse_address(text)
    return family, value, value


def parse_text(text: str) -> ParsedText:
    """A whole list. Bad lines are collected, never fatal: the rest of the list still applies."""
    result = ParsedText()
    v4 = result.v4
    v6 = result.v6
    errors = result.errors
    pton = _pton
    from_bytes = _from_bytes
    blanks = _BLANKS
    leading_zero = _LEADING_ZERO.search
    check_zeros = _CHECK_LEADING_ZEROS
    entries = 0
    # Lines as Notepad numbers them: CRLF, LF or CR end a line (str.splitlines would also split
    # on form feeds and Unicode separators, and the numbers in messages would drift).
    for number, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        line = raw
        if "#" in line:
            line = line.partition("#")[0]
        if ";" in line:
            line = line.partition(";")[0]
        line = line.strip(blanks)
        if not line:
            continue
        entries += 1
        # The common case, a plain IPv4 address, is converted right here (a failed inet_pton
        # costs an exception, so masks, ranges and IPv6 skip it).
        if "/" not in line and "-" not in line and ":" not in line:
            try:
                value = from_bytes(pton(_AF_INET, line), "big")
            except (OSError, ValueError):
                pass
            else:
                if not (check_zeros and "0" in line and leading_zero(line)):
                    v4.append((((value << 32) | value) << LINE_BITS) | number)
                    continue
        try:
            family, start, end = parse_entry(line)
        except EntryError as e:
            entries -= 1
            errors.append(LineError(number, line, str(e)))
            continue
        if family == V4:
            v4.append((((start << 32) | end) << LINE_BITS) | number)
        else:
            v6.append((((start << 128) | end) << LINE_BITS) | number)
            if start <= MAPPED_END and end >= MAPPED_START:
                low, high = max(start, MAPPED_START) - MAPPED_START, min(end, MAPPED_END) - MAPPED_START
                v4.append((((low << 32) | high) << LINE_BITS) | number)
    result.entries = entries
    return result


def _range(text: str) -> tuple[int, int, int]:
    left, _, right = text.partition("-")
    left, right = left.strip(_BLANKS), right.strip(_BLANKS)
    if "-" in right:
        raise EntryError("a range has exactly one '-'; write it as 192.168.0.1-192.168.0.100")
    if not left or not right:
        raise EntryError("a range needs an address on both sides of '-', e.g. 192.168.0.1-192.168.0.100")
    if "/" in left or "/" in right:
        raise EntryError("a range cannot contain a mask; write either 10.0.0.0/24 or 10.0.0.1-10.0.0.100")
    first_family, start = parse_address(left)
    second_family, end = parse_address(right)
    if first_family != second_family:
        raise EntryError("both ends of a range must be IPv4, or both IPv6")
    if start > end:
        raise EntryError(f"the range runs backwards ({left} is after {right}); write the smaller address first")
    return first_family, start, end


def _mask(text: str) -> tuple[int, int, int]:
    address, _, prefix_text = text.partition("/")
    address, prefix_text = address.strip(_BLANKS), prefix_text.strip(_BLANKS)
    family, value = parse_address(address)
    bits = BITS[family]
    if prefix_text.isdigit() and prefix_text.isascii():
        prefix = int(prefix_text)
        if prefix > bits:
            raise EntryError(f"/{prefix_text} is longer than the {bits} bits of an IPv{family} address")
    elif family == V4 and prefix_text:
        prefix = _netmask_prefix(prefix_text)
    else:
        raise EntryError(f"'/{prefix_text}' is not a mask length; write e.g. 192.168.0.0/16 or 2001:db8::/32")
    host_bits = (1 << (bits - prefix)) - 1
    # Host bits set ("192.168.1.7/24") mean the network, as the seed's users expect.
    start = value & ~host_bits
    return family, start, start | host_bits


def _netmask_prefix(mask: str) -> int:
    """``255.255.0.0`` → 16; Windows dialogs show masks this way, so people copy them."""
    try:
        value = _from_bytes(_pton(_AF_INET, mask), "big")
    except (OSError, ValueError):
        raise EntryError(f"'/{mask}' is not a mask; write e.g. /16 or /255.255.0.0") from None
    prefix = 32 - (~value & 0xFFFFFFFF).bit_length()
    if value != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
        raise EntryError(f"'/{mask}' is not a contiguous network mask; write e.g. /16 or /255.255.0.0")
    return prefix


def _explain(text: str, kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]) -> int:
    """The fast path refused ``text``: accept it if ``ipaddress`` does, else say what is wrong."""
    hint = _hint(text)
    if hint:
        raise EntryError(hint)
    try:
        return int(kind(text))
    except ValueError as e:
        raise EntryError(f"{text!r} is not an IP address: {e}") from None


def _hint(text: str) -> str:
    if "\ufffd" in text:
        return "the line holds characters that are not UTF-8 text; save the file as UTF-8 or Unicode"
    if "*" in text:
        return "wildcards are not supported; for 192.168.1.* write 192.168.1.0/24"
    if "," in text or any(c in text for c in " \t"):
        return "one entry per line; put each address on its own line"
    if _LEADING_ZERO.search(text) and text.replace(".", "").isdigit():
        return f"{text!r} has leading zeros, which some programs read as octal; write each number without them"
    if _NAME.match(text):
        return f"{text!r} is a name, not an address; the lists take addresses only (e.g. 192.168.1.10)"
    return ""
