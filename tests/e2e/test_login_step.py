"""The sans-I/O login step (gateway.auth.login) and the store's atomic reserve it relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from gateway.config import ThrottleSettings
from gateway.auth.login import (
    LEASE, WAIT_STALL, Admit, LoginAttempt, Refuse, Reserve, Verify, Wait, decide_cached,
)
from gateway.store import Group, Place, Principal, Reservation, SqliteStore, Store, User
from gateway.auth.throttle import Verdict
from tests.redis_server import start_redis

SETTINGS = ThrottleSettings(ip_failures=3, account_failures=5, spray_failures=4)
PRINCIPAL = Principal(User("1", "Иванов", "1"), Group("1", "Операторы", "mobile", ()))


def attempt(login: str | None = "Иванов", account: str | None = "Иванов", whitelisted: bool = False) -> LoginAttempt:
    return LoginAttempt(SETTINGS, "::ffff:10.0.0.7", login, account, "b1", whitelisted, 1000.0)


def test_an_attempt_reserves_its_address_and_account_before_any_check() -> None:
    step = attempt().start()
    assert isinstance(step, Reserve)
    assert [(p.key, p.limit) for p in step.places] == [("ip:10.0.0.7", 3), ("user:иванов", 5)]
    assert step.spray_key is None  # a named login is not part of a password-only spray


def test_a_password_only_attempt_counts_against_the_account_its_secret_belongs_to() -> None:
    step = attempt(login="", account="Петров").start()
    assert isinstance(step, Reserve)
    assert [(p.key, p.limit) for p in step.places] == [("ip:10.0.0.7", 3), ("user:петров", 5), ("spray:b1", 0)]
    assert step.spray_key == "spray:b1"  # counted there while it is checked, never held up by it


def test_a_whitelisted_address_is_checked_without_places_and_never_counted() -> None:
    a = attempt(whitelisted=True)
    assert a.start() == Verify()
    refusal = a.verified(None, "wrong password", 1001.0)
    assert isinstance(refusal, Refuse) and refusal.status == 401 and refusal.failure is None


def test_a_full_window_refuses_without_a_check() -> None:
    a = attempt()
    a.start()
    step = a.reserved(Reservation("refused", "user:иванов", 5, 42.5))
    assert isinstance(step, Refuse) and step.status == 429 and step.retry_after_header == "43"


def test_places_all_held_make_it_wait_then_give_up_when_nothing_moves() -> None:
    a = attempt()
    a.start()
    assert isinstance(a.reserved(Reservation("wait", "ip:10.0.0.7", 1)), Wait)
    assert isinstance(a.waited(1000.0 + WAIT_STALL / 2, progressed=True), Reserve)
    assert isinstance(a.reserved(Reservation("wait", "ip:10.0.0.7", 1)), Wait)  # progress keeps it waiting
    a.waited(1000.0 + WAIT_STALL * 2, progressed=False)
    gave_up = a.reserved(Reservation("wait", "ip:10.0.0.7", 1))
    assert isinstance(gave_up, Refuse) and gave_up.status == 429


def test_success_gives_the_places_back_and_failure_turns_them_into_rows() -> None:
    a = attempt(login="", account=None)
    a.start()
    assert a.reserved(Reservation("reserved"), spray=(0, 0)) == Verify()
    refusal = a.verified(None, "no such password", 1001.0)
    assert isinstance(refusal, Refuse) and refusal.failure is not None
    assert refusal.failure.rows == (("ip:10.0.0.7", "::ffff:10.0.0.7"), ("spray:b1", "10.0.0.7"))
    b = attempt()
    b.start()
    b.reserved(Reservation("reserved"))
    assert b.verified(PRINCIPAL, "", 1001.0) == Admit(PRINCIPAL, b.holder)


def test_past_the_spray_budget_password_only_checks_queue_and_raise_one_alert() -> None:
    a = attempt(login="", account=None)
    a.start()
    step = a.reserved(Reservation("reserved"), spray=(4, 3))
    assert isinstance(step, Verify) and step.queued and step.alert is not None
    assert (step.alert.failures, step.alert.addresses, step.alert.until) == (4, 3, 1000.0 + SETTINGS.spray_window)


def test_a_cached_credential_is_admitted_unless_address_or_account_is_locked() -> None:
    free, locked = Verdict(False, 0), Verdict(True, 20, 30.0)
    assert decide_cached(PRINCIPAL, free, free, False) == Admit(PRINCIPAL)
    assert isinstance(decide_cached(PRINCIPAL, free, locked, False), Refuse)
    assert decide_cached(PRINCIPAL, free, locked, True) == Admit(PRINCIPAL)


# --- the store's reserve, on both stores ---

@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        sqlite = SqliteStore(tmp_path / "gateway.db")
        yield sqlite
        sqlite.close()
        return
    from gateway.store.redis import RedisStore
    server = start_redis(tmp_path / "redis")
    redis_store = RedisStore(server.url)
    try:
        yield redis_store
    finally:
        redis_store.close()
        server.stop()


def test_reserve_holds_places_until_settled_and_a_dead_holder_s_lease_runs_out(store: Store) -> None:
    places = [Place("ip:10.0.0.7", 2, 600.0)]
    now = 1000.0
    assert store.reserve(places, "a", now, LEASE).outcome == "reserved"
    assert store.reserve(places, "b", now, LEASE).outcome == "reserved"
    waiting = store.reserve(places, "c", now, LEASE)
    assert (waiting.outcome, waiting.holders) == ("wait", "a b")
    store.release("a")  # a succeeded
    assert store.reserve(places, "c", now, LEASE).outcome == "reserved"
    store.settle_failure("c", [("ip:10.0.0.7", "10.0.0.7")], now, now - 600)
    # b's process died: its place comes back once the lease is over
    assert store.reserve(places, "d", now + 1, LEASE).outcome == "wait"
    assert store.reserve(places, "d", now + LEASE + 1, LEASE).outcome == "reserved"
    store.settle_failure("d", [("ip:10.0.0.7", "10.0.0.7")], now + LEASE + 1, now - 600)
    refused = store.reserve(places, "e", now + LEASE + 2, LEASE)
    assert refused.outcome == "refused" and refused.failures == 2
    assert refused.retry_after == pytest.approx(600.0 - (LEASE + 2))  # when c's failure leaves the window


def test_claim_is_granted_once_until_it_runs_out(store: Store) -> None:
    assert store.claim("spray-event:b1", 1000.0, 1060.0)
    assert not store.claim("spray-event:b1", 1001.0, 1061.0)
    assert store.failure_summary("spray:b1", 0.0) == (0, 0, 0)


def _second_connection(store: Store) -> Store:
    """The same store opened again, as another worker or machine would."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    from gateway.store.redis import RedisStore
    where = store._redis.connection_pool.connection_kwargs  # type: ignore[attr-defined]
    return RedisStore(f"redis://{where['host']}:{where['port']}/{where.get('db', 0)}")


def test_a_spray_place_counts_checks_under_way_everywhere_and_never_holds_one_up(store: Store) -> None:
    now = 1000.0
    spray = Place("spray:b1", 0, 60.0)
    other = _second_connection(store)
    try:
        for n in range(6):  # no limit: every attempt gets its place, and each is counted, whoever checks it
            on = store if n % 2 else other
            assert on.reserve([Place(f"ip:10.0.0.{n}", 3, 600.0), spray], f"h{n}", now, LEASE).outcome == "reserved"
        assert store.failure_summary("spray:b1", now - 60) == other.failure_summary("spray:b1", now - 60) == (0, 0, 6)
        other.release("h0")
        store.settle_failure("h1", [("ip:10.0.0.1", "10.0.0.1"), ("spray:b1", "10.0.0.1")], now, now - 600)
        assert other.failure_summary("spray:b1", now - 60) == (1, 1, 4)
    finally:
        other.close()


def test_the_console_s_login_path_counts_against_the_same_windows(tmp_path: Path) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from gateway.auth.login_driver import Logins
    from gateway.accounts import Accounts
    from gateway.store import keys
    from gateway.auth.authenticate import Authenticator
    from gateway.auth.credentials import BasicCredentials
    from gateway.auth.throttle import Throttle

    state = tmp_path / "state"
    sqlite = SqliteStore(state / "gateway.db")
    secret = keys.load_or_create_secret(state)
    accounts = Accounts(sqlite, secret)
    accounts.add_group("Администраторы", "admin", ("Приход",))
    accounts.add_user("admin", "Администраторы", "Admin2024x")
    throttle = Throttle(sqlite, ThrottleSettings())
    pool = ThreadPoolExecutor(2)
    logins = Logins(sqlite, Authenticator(sqlite, secret, 30), throttle, pool, pool)

    async def console(secret_sent: str) -> Admit | Refuse:
        return await logins.login("127.0.0.9", BasicCredentials("admin", secret_sent), base_id="console",
                                  base_name="console", allow_barcode=False, whitelisted=False)

    async def session() -> None:
        admitted = await console("Admin2024x")
        assert isinstance(admitted, Admit) and admitted.principal.group.role == "admin"
        wrong = await asyncio.gather(*(console(f"Wrong{i}xY") for i in range(12)))
        assert sorted(w.status for w in wrong if isinstance(w, Refuse)) == [401] * 10 + [429] * 2
        refused = await console("Admin2024x")  # cached, but the address is locked now
        assert isinstance(refused, Refuse) and refused.status == 429

    try:
        asyncio.run(session())
        assert throttle.check_ip("127.0.0.9").blocked  # what the proxy's Auth reads too
    finally:
        pool.shutdown()
        sqlite.close()


def test_a_queue_moving_in_another_process_keeps_the_attempt_waiting() -> None:
    a = attempt()
    a.start()
    now = 1000.0
    for step in range(4):  # never woken here, but each poll finds other holders ahead
        assert isinstance(a.reserved(Reservation("wait", "ip:10.0.0.7", 9, holders=f"h{step}")), Wait)
        now += WAIT_STALL * 0.75
        a.waited(now, progressed=False)
    assert isinstance(a.reserved(Reservation("wait", "ip:10.0.0.7", 9, holders="h4")), Wait)
    now += WAIT_STALL + 1
    a.waited(now, progressed=False)
    assert isinstance(a.reserved(Reservation("wait", "ip:10.0.0.7", 9, holders="h4")), Refuse)  # stuck
