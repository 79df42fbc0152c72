"""Login throttling under concurrency and distributed guessing, against real gateway processes.

Attempts arrive at once on many TLS connections, on many HTTP/2 streams of one connection, on two
gateway processes sharing a state folder and on two gateways sharing a real Redis: at most the
limit of checks may fail (counted as ``login failed`` events and as the store's failure rows),
and the right password sent among the guesses is refused. Fifty terminals behind one address all
get in. Users are stored with cheap argon2 parameters (the hash carries them), so the tests
measure the throttle, not argon2.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import argon2
import httpx
import pytest

from gateway.store import keys
from gateway.store import Credential, Group, SqliteStore, Store, User, open_store
from gateway.auth.throttle import account_key, ip_key
from tests.harness import RunningGateway, Standin, base_entry, gateway_config
from tests.redis_server import RedisServer

RIGHT, WRONG = "Sklad2024x", "Wrong12345"
_cheap = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def basic(login: str, secret: str, *, encoded: bool = True) -> dict[str, str]:
    pair = f"{login}:{secret}"
    return {"Authorization": "Basic " + (base64.b64encode(pair.encode()).decode() if encoded else pair)}


def add_users(store: Store, state_dir: Path, users: dict[str, str], barcodes: dict[str, str] | None = None) -> None:
    secret = keys.load_or_create_secret(state_dir)
    group = store.find_group("Операторы") or store.put_group(Group("", "Операторы", "mobile", ("Приход",)))
    for name, password in users.items():
        creds = [Credential(keys.credential_key(secret, password), "password", _cheap.hash(password))]
        if barcodes and name in barcodes:
            creds.append(Credential(keys.credential_key(secret, barcodes[name]), "barcode", _cheap.hash(barcodes[name])))
        store.add_user(User("", name, group.id), tuple(creds))


def client(gw: RunningGateway, source: str, base: str = "b1", ca: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source, verify=ssl.create_default_context(cafile=ca or gw.ca_file))
    return httpx.Client(transport=transport, base_url=gw.url(base), timeout=60)


def get(gw: RunningGateway, source: str, headers: dict[str, str], base: str = "b1", ca: str | None = None) -> int:
    with client(gw, source, base, ca) as c:
        return c.get("/echo", headers=headers).status_code


def checks_failed(gw: RunningGateway, address: str) -> int:
    return len(re.findall(rf"login failed from {re.escape(address)}:", gw.log()))


def burst(gw: RunningGateway, source: str, guesses: list[dict[str, str]], base: str = "b1") -> list[int]:
    """Every request on its own connection, all at once."""
    with ThreadPoolExecutor(len(guesses)) as pool:
        return list(pool.map(lambda h: get(gw, source, h, base), guesses))


def guesses_with_right_one(login: str, count: int = 200, right_at: int = 150) -> list[dict[str, str]]:
    guesses = [basic(login, f"{WRONG}{i}") for i in range(count)]
    guesses[right_at] = basic(login, RIGHT)
    return guesses


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, standin: Standin) -> Iterator[RunningGateway]:
    from tests.harness import start_gateway
    directory = tmp_path_factory.mktemp("concurrency")
    bases = [base_entry(standin, "b1", "Склад 1", user_auth=True, login_by_barcode=True),
             base_entry(standin, "b2", "Склад 2", user_auth=True, login_by_barcode=True)]
    config = gateway_config(directory, standin, bases=bases, auth={"cache_seconds": 30})
    state = directory / "state"
    store = SqliteStore(state / "gateway.db")
    add_users(store, state, {"Иванов": RIGHT, "Петров": RIGHT + "p", "Сидоров": RIGHT + "s",
                             "Kozlov": RIGHT + "k", **{f"terminal{i:02d}": f"Term{i:02d}xyZ" for i in range(100)}},
              barcodes={"Kozlov": "4600000000017"})
    store.close()
    running = start_gateway(directory, config)
    yield running
    running.stop()


def failures(gw: RunningGateway, key: str) -> int:
    store = SqliteStore(gw.state_dir / "gateway.db")
    try:
        return len(store.failure_times(key, time.time() - 120))
    finally:
        store.close()


def test_200_concurrent_guesses_on_200_connections_fail_at_most_10_times(gw: RunningGateway) -> None:
    answers = burst(gw, "127.0.0.2", guesses_with_right_one("Иванов"))
    assert answers[150] == 429  # the right password, sent among the guesses, never got checked
    assert set(answers) <= {401, 429} and answers.count(401) <= 10
    assert checks_failed(gw, "127.0.0.2") <= 10
    assert failures(gw, ip_key("127.0.0.2")) == 10
    assert get(gw, "127.0.0.2", basic("Иванов", RIGHT)) == 429  # and stays refused


def test_200_streams_of_one_http2_connection_fail_at_most_10_times(gw: RunningGateway) -> None:
    guesses = guesses_with_right_one("Петров")
    guesses[150] = basic("Петров", RIGHT + "p")

    async def all_streams() -> list[int]:
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.3", http2=True,
                                             verify=ssl.create_default_context(cafile=gw.ca_file))
        async with httpx.AsyncClient(transport=transport, base_url=gw.url("b1"), timeout=60, http2=True,
                                     limits=httpx.Limits(max_connections=1)) as c:
            first = await c.get("/echo", headers=basic("Петров", WRONG))  # opens the one connection
            assert first.http_version == "HTTP/2"
            answers = await asyncio.gather(*(c.get("/echo", headers=h) for h in guesses))
            return [first.status_code] + [a.status_code for a in answers]

    answers = asyncio.run(all_streams())
    assert answers[151] == 429
    assert answers.count(401) <= 10 and checks_failed(gw, "127.0.0.3") <= 10
    assert failures(gw, ip_key("127.0.0.3")) == 10


def test_50_terminals_behind_one_address_all_get_in(gw: RunningGateway) -> None:
    logins = [basic(f"terminal{i:02d}", f"Term{i:02d}xyZ") for i in range(50)]
    assert burst(gw, "127.0.0.4", logins) == [200] * 50


def test_50_terminals_get_in_with_9_failures_already_recorded(gw: RunningGateway) -> None:
    with client(gw, "127.0.0.5") as c:
        assert [c.get("/echo", headers=basic("", f"{WRONG}{i}")).status_code for i in range(9)] == [401] * 9
    logins = [basic(f"terminal{i:02d}", f"Term{i:02d}xyZ") for i in range(50, 100)]
    assert burst(gw, "127.0.0.5", logins) == [200] * 50
    assert failures(gw, ip_key("127.0.0.5")) == 9


def test_30_guesses_over_6_addresses_check_one_account_at_most_20_times(gw: RunningGateway) -> None:
    def from_address(i: int) -> list[int]:
        return burst(gw, f"127.0.0.{10 + i}", [basic("Сидоров", f"{WRONG}{i}-{j}") for j in range(5)])

    with ThreadPoolExecutor(6) as pool:
        answers = [a for batch in pool.map(from_address, range(6)) for a in batch]
    assert answers.count(401) <= 20 and answers.count(429) >= 10
    assert failures(gw, account_key("Сидоров")) == 20
    assert sum(checks_failed(gw, f"127.0.0.{10 + i}") for i in range(6)) <= 20


def test_a_locked_account_is_refused_in_every_form(gw: RunningGateway) -> None:
    for i in range(4):  # 4 addresses × 5 guesses: the account's 20
        with client(gw, f"127.0.0.{20 + i}") as c:
            for j in range(5):
                assert c.get("/echo", headers=basic("Kozlov", f"{WRONG}{j}")).status_code == 401
    with client(gw, "127.0.0.30") as c:  # a fifth address, with the right secret every way
        assert c.get("/echo", headers=basic("Kozlov", RIGHT + "k")).status_code == 429
        assert c.get("/echo", headers=basic("Kozlov", RIGHT + "k", encoded=False)).status_code == 429
        assert c.get("/echo", headers=basic("", RIGHT + "k")).status_code == 429  # password only
        locked = c.get("/echo", headers=basic("", "4600000000017"))  # barcode
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
        assert c.get("/echo", headers=basic("Иванов", WRONG)).status_code == 401  # others are not locked


def test_a_password_only_spray_over_30_addresses_is_noticed_once_and_slowed(gw: RunningGateway) -> None:
    gw.mark_log()

    def from_address(i: int) -> list[int]:
        with client(gw, f"127.0.1.{i + 1}", base="b2") as c:
            return [c.get("/echo", headers=basic("", f"{WRONG}-{i}-{j}")).status_code for j in range(5)]

    with ThreadPoolExecutor(30) as pool:
        spray = pool.submit(lambda: [a for batch in pool.map(from_address, range(30)) for a in batch])
        gw.wait_for_log("spray-detected", timeout=60)
        started = time.monotonic()
        assert get(gw, "127.0.1.200", basic("", RIGHT), base="b2") == 200  # terminals keep working
        slowed = time.monotonic() - started
        assert spray.result() == [401] * 150
    events = re.findall(r"spray-detected: .*", gw.log())
    assert len(events) == 1, events
    assert "from 30 addresses" in events[0] or re.search(r"from \d+ addresses", events[0])
    assert slowed >= 0.1  # queued behind the spray


# --- several processes, several machines ---

def _burst_two(a: RunningGateway, b: RunningGateway, source: str, login: str, ca: str | None = None) -> list[int]:
    guesses = guesses_with_right_one(login)
    with ThreadPoolExecutor(len(guesses)) as pool:
        return list(pool.map(lambda ih: get(a if ih[0] % 2 else b, source, ih[1], ca=ca), enumerate(guesses)))


def test_two_processes_on_one_state_folder_share_the_limit(
        tmp_path: Path, standin: Standin, gateway_factory: Callable[..., RunningGateway]) -> None:
    config = gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", "Склад", user_auth=True)])
    state = tmp_path / "a" / "state"
    store = SqliteStore(state / "gateway.db")
    add_users(store, state, {"Иванов": RIGHT})
    store.close()
    a = gateway_factory(config, directory=tmp_path / "a")
    other = gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", "Склад", user_auth=True)],
                           state_dir=str(state))
    b = gateway_factory(other, directory=tmp_path / "b")
    answers = _burst_two(a, b, "127.0.0.2", "Иванов", ca=a.ca_file)  # b uses a's state folder, so a's CA
    assert answers[150] == 429 and answers.count(401) <= 10
    assert checks_failed(a, "127.0.0.2") + checks_failed(b, "127.0.0.2") <= 10
    assert failures(a, ip_key("127.0.0.2")) == 10



def test_two_gateways_sharing_redis_share_the_limit(
        tmp_path: Path, standin: Standin, redis_server: RedisServer,
        gateway_factory: Callable[..., RunningGateway]) -> None:
    def config() -> dict[str, Any]:
        return gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", "Склад", user_auth=True)],
                              store={"backend": "redis", "redis_url": redis_server.url})

    a_state, b_state = tmp_path / "a" / "state", tmp_path / "b" / "state"
    a_state.mkdir(parents=True)
    b_state.mkdir(parents=True)
    keys.load_or_create_secret(a_state)
    shutil.copyfile(a_state / keys.SECRET_FILE, b_state / keys.SECRET_FILE)
    store = open_store(a_state, "redis", redis_server.url)
    add_users(store, a_state, {"Иванов": RIGHT})
    a = gateway_factory(config(), directory=tmp_path / "a")
    b = gateway_factory(config(), directory=tmp_path / "b")
    try:
        answers = _burst_two(a, b, "127.0.0.2", "Иванов")
        assert answers[150] == 429 and answers.count(401) <= 10
        assert checks_failed(a, "127.0.0.2") + checks_failed(b, "127.0.0.2") <= 10
        assert len(store.failure_times(ip_key("127.0.0.2"), time.time() - 120)) == 10
    finally:
        store.close()
