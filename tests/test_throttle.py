from pathlib import Path

import pytest

from gateway.config import ThrottleSettings
from gateway.store import SqliteStore
from gateway.throttle import Throttle, account_key, ip_key, window_verdict


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
