"""Resets per address across connections, and the request-target rules both protocols share (issue 24)."""

from __future__ import annotations

import pytest

from gateway.traffic.limits import RESET_BAN, RESET_KEY, HeadRefused, ResetLedger, check_target


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


def test_the_ledger_sends_batches_to_the_store_and_takes_every_process_s_bans_back() -> None:
    ledger = ResetLedger()
    for i in range(300):
        ledger.record("203.0.113.5", 100.0 + i * 0.001, limit=500)
    ledger.record("203.0.113.6", 100.5, limit=500)
    counts, fresh = ledger.take_pending()
    assert sorted(counts) == [(RESET_KEY + "203.0.113.5", 300), (RESET_KEY + "203.0.113.6", 1)] and fresh == set()
    assert ledger.take_pending() == ([], set())  # each reset goes to the store once
    # Another worker's resets took the address past the limit in the store: refused here too.
    ledger.adopt({RESET_KEY + "203.0.113.5": 5000.0 + RESET_BAN}, now=101.0, wall=5000.0)
    assert ledger.banned_for("203.0.113.5", 101.5) == pytest.approx(RESET_BAN - 0.5)
    # A ban made here goes to the store as a full count, and is kept until the store knows it.
    assert [ledger.record("203.0.113.7", 102.0, limit=2) for _ in range(3)] == [False, False, True]
    ledger.adopt({}, now=102.1, wall=5001.1)  # an answer to a batch sent before that ban
    assert ledger.banned_for("203.0.113.7", 102.2) > 0
    counts, fresh = ledger.take_pending()
    assert (RESET_KEY + "203.0.113.7", 3) in counts and fresh == {"203.0.113.7"}
    # The store is down: the ban goes with the next batch; the plain count does not.
    ledger.give_back(counts + [(RESET_KEY + "203.0.113.8", 1)], fresh, limit=2)
    assert ledger.take_pending() == ([(RESET_KEY + "203.0.113.7", 3)], {"203.0.113.7"})
    # The store no longer lists a ban (`gateway bans lift`): it ends here too.
    ledger.adopt({}, now=103.0, wall=5002.0)
    assert ledger.banned_for("203.0.113.5", 103.0) == 0.0 and ledger.banned_for("203.0.113.7", 103.0) == 0.0


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
