"""Whether a client address may connect to a base, and which file and line decided it.

The seed's rule: the whitelist has priority — an address on it is let in and the blacklist is
not consulted; otherwise an address on the blacklist is refused; otherwise it is let in. With
``whitelist_only`` a base admits whitelisted addresses and nobody else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gateway.iplist.lists import CompiledList
from gateway.iplist.parse import MAPPED_END, MAPPED_START, V4, V6, EntryError, parse_address

WHITELISTED = "whitelisted"
BLACKLISTED = "blacklisted"
NOT_WHITELISTED = "not-whitelisted"  # refused by a whitelist-only base
NOT_LISTED = "not-listed"


@dataclass(frozen=True)
class Match:
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    verdict: str
    match: Match | None = None

    def describe(self) -> str:
        """Why, for people: ``on the blacklist (/srv/base/Server/blacklist.dat:3)``."""
        if self.verdict == WHITELISTED:
            return f"on the whitelist ({self.match})"
        if self.verdict == BLACKLISTED:
            return f"on the blacklist ({self.match})"
        if self.verdict == NOT_WHITELISTED:
            return "on no whitelist, and the base admits only whitelisted addresses (whitelist_only)"
        return "on no list"

    def __str__(self) -> str:
        return f"{'allowed' if self.allowed else 'refused'}: {self.describe()}"


def client_address(host: str) -> tuple[int, int]:
    """A client's address as a socket reports it → (family, value).

    ``::ffff:a.b.c.d`` (an IPv4 client on a dual-stack socket) is the IPv4 address; a zone id
    (``fe80::1%eth0``) and URL brackets are dropped. Raises ValueError for anything else.
    """
    text = host.strip().removeprefix("[").removesuffix("]")
    if not text or "/" in text or "-" in text:
        raise ValueError(f"{host!r} is not an IP address")
    try:
        family, value = parse_address(text)
    except EntryError as e:
        raise ValueError(str(e)) from None
    if family == V6 and MAPPED_START <= value <= MAPPED_END:
        return V4, value - MAPPED_START
    return family, value


def find(lists: Sequence[CompiledList], family: int, value: int) -> Match | None:
    for compiled in lists:
        line = compiled.find(family, value)
        if line is not None:
            return Match(compiled.path, line)
    return None


def decide(host: str, whitelists: Sequence[CompiledList], blacklists: Sequence[CompiledList],
           whitelist_only: bool = False) -> Decision:
    """The decision for one client address. Raises ValueError if ``host`` is not an address."""
    family, value = client_address(host)
    allowed_by = find(whitelists, family, value)
    if allowed_by is not None:
        return Decision(True, WHITELISTED, allowed_by)
    if whitelist_only:
        return Decision(False, NOT_WHITELISTED)
    refused_by = find(blacklists, family, value)
    if refused_by is not None:
        return Decision(False, BLACKLISTED, refused_by)
    return Decision(True, NOT_LISTED)
