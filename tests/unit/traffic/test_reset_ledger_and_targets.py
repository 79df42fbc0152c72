"""Resets per address across connections, and the request-target rules both protocols share (issue 24)."""

from __future__ import annotations

import pytest

from gateway.traffic.limits import RESET_BAN, HeadRefused, ResetLedger, check_target


def test_resets_from_one_address_over_many_connections_ban_it_for_a_while() -> None:
    ledger = ResetLedger()
    banned = [ledger.record("203.0.113.5", 100.0 + i * 0.001, limit=500) for i in range(501)]
    assert banned[-1] and not any(banned[:-1])
    assert ledger.banned_for("203.0.113.5", 101.0) > RESET_BAN - 2
    assert ledger.banned_for("203.0.113.6", 101.0) == 0.0
    assert ledger.banned_for("203.0.113.5", 100.0 + RESET_BAN + 1) == 0.0
    # Spread over more than the window, the same number never bans.
    slow = ResetLedger()
    assert not any(slow.record("203.0.113.7", i * 0.1, limit=500) for i in range(1000))


@pytest.mark.parametrize("method, target, expected", [
    ("GET", "/a/b?x=1", "/a/b?x=1"),
    ("GET", "http://evil.example/a?x", "/a?x"),
    ("GET", "HTTPS://evil.example", "/"),
    ("GET", "http://evil.example?x", "/?x"),
    ("OPTIONS", "*", "*"),
    ("GET", "/a/..b/c.", "/a/..b/c."),
    ("GET", "/a/../b", "/b"), ("GET", "/./a", "/a"), ("GET", "/a/..", "/"), ("GET", "/a/b/..?x=/../", "/a/?x=/../"),
    ("GET", "http://x/a/../b", "/b"), ("GET", "//echo/./x/..", "//echo/"),
])
def test_targets_forwarded(method: str, target: str, expected: str) -> None:
    assert check_target(method, target) == expected


@pytest.mark.parametrize("method, target", [
    ("GET", "*"), ("GET", "a/b"), ("GET", "/a#b"), ("GET", "/a/%2E%2e/b"), ("GET", "/a/.%2e/b"), ("GET", "/%2e/a"),
    ("GET", "/../a"), ("GET", "/a/../../b"),
])
def test_targets_refused(method: str, target: str) -> None:
    with pytest.raises(HeadRefused) as refused:
        check_target(method, target)
    assert refused.value.status == 400
