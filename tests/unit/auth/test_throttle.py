from pathlib import Path

import pytest

from gateway.config import ThrottleSettings
from gateway.store import SqliteStore
from gateway.auth.throttle import Throttle, account_key, ip_key, window_verdict


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_ten_failures_allowed_the_eleventh_attempt_refused() -> None:
    times = [100.0 + i for i in range(9)]
    assert not window_verdict(times, 10, 60, 110).blocked
    times.append(109.0)
    verdict = window_verdict(times, 10, 60, 110)
    assert verdict.blocked and verdict.failures == 10
    # the first failure (t=100) leaves the window at 160: 50 s from now
    assert verdict.retry_after == pytest.approx(50)
    assert verdict.retry_after_header == "50"


def test_window_slides_open_again() -> None:
    times = [100.0 + i for i in range(10)]
    assert window_verdict(times, 10, 60, 159.9).blocked
    assert not window_verdict(times, 10, 60, 160.0).blocked


def test_retry_after_counts_from_the_right_failure_when_over_the_limit() -> None:
    times = [0.0, 1.0, 2.0, 30.0, 31.0]  # 5 failures, limit 3: allowed once 3 of them left
    verdict = window_verdict(times, 3, 60, 40)
    assert verdict.blocked and verdict.retry_after == pytest.approx(62 - 40)
    assert verdict.retry_after_header == "22"


def test_retry_after_header_is_at_least_one_second() -> None:
    assert window_verdict([0.0], 1, 60, 59.99).retry_after_header == "1"


@pytest.mark.parametrize("address, key", [
    ("127.0.0.2", "ip:127.0.0.2"),
    ("::ffff:10.0.0.1", "ip:10.0.0.1"),
    ("2001:db8::1", "ip:2001:db8::1"),
])
def test_ip_keys(address: str, key: str) -> None:
    assert ip_key(address) == key


def test_account_key_ignores_case() -> None:
    assert account_key(" Иванов ") == account_key("иванов")


def test_throttle_over_the_store(tmp_path: Path) -> None:
    clock = Clock()
    throttle = Throttle(SqliteStore(tmp_path / "gateway.db"), ThrottleSettings(), clock)
    for _ in range(10):
        assert not throttle.check_ip("127.0.0.2").blocked
        throttle.record_failure("127.0.0.2", "admin")
        clock.now += 1
    assert throttle.check_ip("127.0.0.2").blocked
    assert not throttle.check_ip("127.0.0.3").blocked
    assert throttle.check_account("ADMIN").failures == 10
    assert not throttle.check_account("admin").blocked  # 20 per account by default
    bans = throttle.bans()
    assert [(b.kind, b.target, b.failures) for b in bans] == [("address", "127.0.0.2", 10)]
    assert throttle.lift("127.0.0.2") == 10
    assert not throttle.check_ip("127.0.0.2").blocked
    clock.now += 61
    assert throttle.check_account("admin").failures == 0


def test_account_limit_from_many_addresses(tmp_path: Path) -> None:
    clock = Clock()
    throttle = Throttle(SqliteStore(tmp_path / "gateway.db"), ThrottleSettings(account_failures=5), clock)
    for i in range(5):
        throttle.record_failure(f"10.0.0.{i}", "admin")
    assert throttle.check_account("admin").blocked
    assert not throttle.check_ip("10.0.0.1").blocked
    assert [b.kind for b in throttle.bans()] == ["user"]
    assert throttle.lift("Admin") == 5
    assert not throttle.check_account("admin").blocked


def test_a_restart_keeps_the_count(tmp_path: Path) -> None:
    clock = Clock()
    first = SqliteStore(tmp_path / "gateway.db")
    for _ in range(10):
        Throttle(first, ThrottleSettings(), clock).record_failure("127.0.0.2")
    first.close()
    again = Throttle(SqliteStore(tmp_path / "gateway.db"), ThrottleSettings(), clock)
    assert again.check_ip("127.0.0.2").blocked


class CountingReads:
    """The real store, counting failure_times reads (the query the memo saves)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def failure_times(self, key: str, since: float) -> list[float]:
        self.reads += 1
        return self.store.failure_times(key, since)


def test_checks_read_the_store_once_while_nothing_changes(tmp_path: Path) -> None:
    store = CountingReads(SqliteStore(tmp_path / "gateway.db"))
    throttle = Throttle(store, ThrottleSettings(), Clock())  # type: ignore[arg-type]
    for _ in range(50):
        assert not throttle.check_ip("127.0.0.2").blocked
        assert not throttle.check_account("admin").blocked
    assert store.reads == 2


def test_a_failure_recorded_by_another_process_is_seen_at_once(tmp_path: Path) -> None:
    clock = Clock()
    here = Throttle(SqliteStore(tmp_path / "gateway.db"), ThrottleSettings(), clock)
    there = Throttle(SqliteStore(tmp_path / "gateway.db"), ThrottleSettings(), clock)
    for _ in range(10):
        assert not here.check_ip("127.0.0.2").blocked  # memoised between failures
        there.record_failure("127.0.0.2", "admin")
    assert here.check_ip("127.0.0.2").blocked
    assert here.check_account("admin").failures == 10
    there.lift("127.0.0.2")
    assert not here.check_ip("127.0.0.2").blocked


def test_a_memoised_ban_counts_down_and_ends_on_time(tmp_path: Path) -> None:
    clock = Clock()
    store = CountingReads(SqliteStore(tmp_path / "gateway.db"))
    throttle = Throttle(store, ThrottleSettings(), clock)  # type: ignore[arg-type]
    for _ in range(10):
        throttle.record_failure("127.0.0.2")
    first = throttle.check_ip("127.0.0.2")
    assert first.blocked and first.retry_after_header == "60"
    reads = store.reads
    clock.now += 45
    later = throttle.check_ip("127.0.0.2")
    assert later.blocked and later.retry_after_header == "15"
    clock.now += 15
    assert not throttle.check_ip("127.0.0.2").blocked
    assert store.reads == reads  # all from memory, yet exact
    clock.now -= 120  # a clock set back needs older rows than the memo holds: read again
    throttle.check_ip("127.0.0.2")
    assert store.reads == reads + 1


def test_a_reset_ban_is_listed_with_the_lockouts_and_lifted_by_its_address(tmp_path: Path) -> None:
    import time

    store = SqliteStore(tmp_path / "gateway.db")
    throttle = Throttle(store, ThrottleSettings())  # the wall clock: the store's short bans keep it
    store.add_strikes([("reset:::ffff:10.0.0.9", 501)], time.time(), 10.0, 500, 60.0)
    [ban] = throttle.bans()
    assert (ban.kind, ban.target, ban.short) == ("address (HTTP/2 resets)", "::ffff:10.0.0.9", True)
    assert 55 < ban.retry_after <= 60
    assert throttle.lift("10.0.0.8") == 0 and throttle.bans()  # another address: nothing lifted
    assert throttle.lift("10.0.0.9") == 1 and throttle.bans() == []  # the same client, written plainly
    store.close()
