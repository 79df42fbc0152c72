"""The decision table: whitelist priority, blacklist, whitelist-only, mapped IPv6, zone ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.iplist.decision import BLACKLISTED, NOT_LISTED, NOT_WHITELISTED, WHITELISTED, client_address, decide
from gateway.iplist.lists import CompiledList, compile_text
from gateway.iplist.parse import V4, V6

WHITE = compile_text("10.0.0.1\n10.0.0.2\n2001:db8::1\n", Path("/b/Server/whitelist.dat"))
BLACK = compile_text("# deny\n10.0.0.2\n10.0.0.3\n10.9.0.0/16\n2001:db8::/32\n", Path("/b/Server/blacklist.dat"))
GLOBAL_WHITE = compile_text("10.9.9.9\n", Path("/etc/gw/white.dat"))
NO_LIST = CompiledList(Path("/b/Server/none.dat"), present=False)


@pytest.mark.parametrize(("host", "whitelist_only", "allowed", "verdict", "where"), [
    ("10.0.0.1", False, True, WHITELISTED, "whitelist.dat:1"),
    ("10.0.0.2", False, True, WHITELISTED, "whitelist.dat:2"),      # on both: the whitelist wins
    ("10.0.0.3", False, False, BLACKLISTED, "blacklist.dat:3"),
    ("10.0.0.4", False, True, NOT_LISTED, None),
    ("10.9.1.1", False, False, BLACKLISTED, "blacklist.dat:4"),
    ("10.9.9.9", False, True, WHITELISTED, "white.dat:1"),          # global whitelist beats the base's blacklist
    ("2001:db8::1", False, True, WHITELISTED, "whitelist.dat:3"),
    ("2001:db8::2", False, False, BLACKLISTED, "blacklist.dat:5"),
    ("::ffff:10.0.0.3", False, False, BLACKLISTED, "blacklist.dat:3"),  # mapped IPv6 is IPv4
    ("::ffff:10.0.0.1", False, True, WHITELISTED, "whitelist.dat:1"),
    ("[2001:db8::2]", False, False, BLACKLISTED, "blacklist.dat:5"),
    ("2001:db8::2%eth0", False, False, BLACKLISTED, "blacklist.dat:5"),  # zone id ignored
    ("10.0.0.1", True, True, WHITELISTED, "whitelist.dat:1"),
    ("10.0.0.4", True, False, NOT_WHITELISTED, None),               # whitelist-only: unlisted refused
    ("10.0.0.3", True, False, NOT_WHITELISTED, None),
    ("10.9.9.9", True, True, WHITELISTED, "white.dat:1"),
])
def test_decision_table(host: str, whitelist_only: bool, allowed: bool, verdict: str, where: str | None) -> None:
    decision = decide(host, [WHITE, GLOBAL_WHITE], [BLACK, NO_LIST], whitelist_only)
    assert (decision.allowed, decision.verdict) == (allowed, verdict)
    if where is None:
        assert decision.match is None
    else:
        assert str(decision.match).endswith(where)
        assert where in decision.describe()


def test_no_lists_lets_everyone_in_and_whitelist_only_nobody() -> None:
    assert decide("192.0.2.1", [], []).allowed
    assert not decide("192.0.2.1", [NO_LIST], [NO_LIST], whitelist_only=True).allowed


def test_decision_reads_like_a_sentence() -> None:
    decision = decide("10.0.0.3", [WHITE], [BLACK])
    assert str(decision) == "refused: on the blacklist (/b/Server/blacklist.dat:3)"


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", (V4, 0x7F000001)),
    ("::ffff:127.0.0.1", (V4, 0x7F000001)),
    ("::FFFF:7f00:1", (V4, 0x7F000001)),
    ("::1", (V6, 1)),
    ("fe80::1%eth0", (V6, 0xFE80 << 112 | 1)),
    ("[::1]", (V6, 1)),
    ("::127.0.0.1", (V6, 0x7F000001)),    # the deprecated "compatible" form is not mapped
])
def test_client_address_normalisation(host: str, expected: tuple[int, int]) -> None:
    assert client_address(host) == expected


@pytest.mark.parametrize("host", ["", "example.com", "10.0.0.0/8", "10.0.0.1-10.0.0.2", "1.2.3"])
def test_client_address_rejects_non_addresses(host: str) -> None:
    with pytest.raises(ValueError):
        client_address(host)
