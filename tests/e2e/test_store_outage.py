"""Issue 19, fault 1: the Redis store down — at start, mid-run and flapping — with a real redis-server.

The outage is a real one: the server is stopped (its data saved first, as a Redis with
persistence keeps it) and started again on the same port. What must hold: the gateway starts
and serves bases without user_auth; user_auth bases answer 503 with Retry-After and forward
nothing; /readyz says the store is down and /metrics has gateway_store_up 0; one ERROR when it
goes, one INFO when it is back; logins work again within 5 s of its return, with no restart.
"""

from __future__ import annotations

import base64
import re
import ssl
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import yaml

from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config, run_gateway_command
from tests.redis_server import RedisServer, restart, start_redis, stop_keeping_data

PASSWORD = "Sklad2024x"
RECOVERY_LIMIT = 5.0
FLAP_SECONDS = 20.0
FLAP_DOWN, FLAP_UP = 3.0, 3.0


def basic(secret: str, login: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


def config(tmp_path: Path, standin: Standin, redis_url: str, admin_port: int) -> dict[str, Any]:
    bases = [base_entry(standin, "b1", "Склад", user_auth=True), base_entry(standin, "b2", "Открытая")]
    # No success cache: every login below is a real one (a place reserved in Redis, then argon2).
    return gateway_config(tmp_path, standin, bases=bases, store={"backend": "redis", "redis_url": redis_url},
                          auth={"cache_seconds": 0},
                          admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port})


def client(gw: RunningGateway, base: str) -> httpx.Client:
    transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=gw.ca_file))
    return httpx.Client(transport=transport, base_url=gw.url(base), timeout=15)


def add_user(directory: Path) -> None:
    cli_ok(directory, "group", "add", "Операторы", "--role", "mobile", "--doc-type", "Поступление")
    cli_ok(directory, "user", "add", "Иванов", "--group", "Операторы", "--password-stdin", input=PASSWORD + "\n",
           secrets=(PASSWORD,))


def store_up(admin: str) -> float:
    text = httpx.get(f"{admin}/metrics", timeout=10).text
    found = re.search(r"^gateway_store_up (\S+)$", text, re.M)
    assert found, "gateway_store_up missing from /metrics"
    return float(found.group(1))


def wait_for_login(gw: RunningGateway, limit: float) -> float:
    """Seconds until a real login succeeds again."""
    start = time.monotonic()
    with client(gw, "b1") as c:
        while True:
            answer = c.get("/echo", headers=basic(PASSWORD))
            if answer.status_code == 200:
                return time.monotonic() - start
            assert answer.status_code == 503, answer.text
            assert time.monotonic() - start < limit, f"no login within {limit} s of the store's return"
            time.sleep(0.1)


def test_gateway_starts_without_its_store_and_connects_when_it_returns(
        tmp_path: Path, standin: Standin, redis_server: RedisServer,
        gateway_factory: Callable[..., RunningGateway], request: pytest.FixtureRequest) -> None:
    admin_port = free_port()
    cfg = config(tmp_path, standin, redis_server.url, admin_port)
    directory = tmp_path / "gw"
    directory.mkdir()
    (directory / "gateway.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    add_user(directory)  # the CLI publishes the HMAC key's fingerprint, as a first start would
    stop_keeping_data(redis_server)

    # --- a reboot during the outage: the gateway starts all the same ---
    gw = gateway_factory(cfg, directory=directory)
    admin = f"http://127.0.0.1:{admin_port}"
    marker = uuid.uuid4().hex
    with client(gw, "b2") as open_base, client(gw, "b1") as auth_base:
        assert open_base.get("/echo").status_code == 200
        refused = auth_base.get(f"/echo/{marker}", headers=basic(PASSWORD))
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert auth_base.post("/.gateway/login", headers=basic(PASSWORD)).status_code == 503
    assert marker not in standin.log_path.read_text(encoding="utf-8", errors="replace")  # never forwarded
    ready = httpx.get(f"{admin}/readyz", timeout=10)
    assert ready.status_code == 503 and "user store down" in ready.text and f":{redis_server.port}" in ready.text
    assert store_up(admin) == 0

    # --- the CLI says so in one line ---
    done = run_gateway_command(directory, "user", "list")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "cannot be reached" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr

    # --- the store returns: logins within 5 s, with no restart ---
    back = restart(redis_server)
    request.addfinalizer(back.stop)
    took = wait_for_login(gw, RECOVERY_LIMIT)
    print(f"\nlogin works {took:.2f} s after Redis answered again (start during the outage)")
    assert httpx.get(f"{admin}/readyz", timeout=10).status_code == 200
    assert store_up(admin) == 1
    assert gw.process.poll() is None
    log = gw.log()
    assert len(re.findall(r"ERROR .*store down", log)) == 1, log[-3000:]
    assert len(re.findall(r"INFO .*store back", log)) == 1, log[-3000:]


def test_flapping_store_logs_each_outage_once_and_logins_return_within_5_s(
        tmp_path: Path, standin: Standin, redis_server: RedisServer,
        gateway_factory: Callable[..., RunningGateway], request: pytest.FixtureRequest) -> None:
    admin_port = free_port()
    gw = gateway_factory(config(tmp_path, standin, redis_server.url, admin_port), directory=tmp_path / "gw")
    add_user(gw.directory)
    admin = f"http://127.0.0.1:{admin_port}"
    assert wait_for_login(gw, RECOVERY_LIMIT) < RECOVERY_LIMIT
    pid = gw.process.pid
    server = redis_server
    outages, recoveries, refused = 0, [], 0
    deadline = time.monotonic() + FLAP_SECONDS
    with client(gw, "b1") as c:
        while time.monotonic() < deadline:
            stop_keeping_data(server)
            outages += 1
            down_until = time.monotonic() + FLAP_DOWN
            while time.monotonic() < down_until:  # traffic all through the outage
                answer = c.get("/echo", headers=basic(PASSWORD))
                assert answer.status_code == 503 and answer.headers.get("Retry-After"), answer.status_code
                refused += 1
                time.sleep(0.05)
            assert store_up(admin) == 0
            server = restart(server)
            request.addfinalizer(server.stop)
            recoveries.append(wait_for_login(gw, RECOVERY_LIMIT))
            time.sleep(FLAP_UP)
    assert store_up(admin) == 1
    print(f"\n{outages} outages, {refused} requests refused with 503; login back after "
          f"{', '.join(f'{t:.2f}' for t in recoveries)} s (max {max(recoveries):.2f} s)")
    assert max(recoveries) < RECOVERY_LIMIT
    assert gw.process.poll() is None and gw.process.pid == pid  # no restart
    log = gw.log()
    downs = re.findall(r"ERROR .*store down", log)
    backs = re.findall(r"INFO .*store back.*?(\d+) store call\(s\) failed meanwhile", log)
    assert len(downs) == outages and len(backs) == outages, log[-4000:]
    assert sum(int(n) for n in backs) >= refused  # the refusals were counted, not logged one by one
    assert len(re.findall(r" ERROR ", log)) == outages, log[-4000:]  # nothing else at ERROR: no storm


def test_rate_limit_counts_again_within_5_s_of_redis_returning_without_a_restart(
        tmp_path: Path, standin: Standin, redis_server: RedisServer,
        gateway_factory: Callable[..., RunningGateway], request: pytest.FixtureRequest) -> None:
    # One per-process store (gateway/store/handle.py): the rate limit's count uses the same
    # reconnecting store as the login path. 1 + burst requests fit in this test's time, no more.
    burst = 3
    bases = [base_entry(standin, "b1", "Склад", rate_limit={"rate": "1r/m", "burst": burst})]
    cfg = gateway_config(tmp_path, standin, bases=bases, store={"backend": "redis", "redis_url": redis_server.url})
    gw = gateway_factory(cfg, directory=tmp_path / "gw")
    pid = gw.process.pid

    def get(source: str, marker: str = "echo") -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=source, verify=ssl.create_default_context(cafile=gw.ca_file))
        with httpx.Client(transport=transport, timeout=15) as c:
            return c.get(gw.url("b1", path=f"/echo/{marker}"))

    assert [get("127.0.0.2").status_code for _ in range(burst + 2)] == [200] * (burst + 1) + [429]
    stop_keeping_data(redis_server)
    marker = uuid.uuid4().hex
    for _ in range(3):  # fail closed: a request that cannot be counted is not forwarded
        refused = get("127.0.0.4", marker)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5", refused.status_code
    assert marker not in standin.log_path.read_text(encoding="utf-8", errors="replace")

    back = restart(redis_server)
    request.addfinalizer(back.stop)
    returned = time.monotonic()
    while (answer := get("127.0.0.5")).status_code != 200:
        assert answer.status_code == 503, answer.status_code
        assert time.monotonic() - returned < RECOVERY_LIMIT, "the rate limit did not count again within 5 s"
        time.sleep(0.1)
    took = time.monotonic() - returned
    print(f"\nthe rate limit counts again {took:.2f} s after Redis answered again")
    # Counting, not just letting through: the new address reaches its burst, the old one is
    # still over its limit (Redis kept its data).
    assert [get("127.0.0.5").status_code for _ in range(burst + 1)] == [200] * burst + [429]
    assert get("127.0.0.2").status_code == 429
    assert gw.process.poll() is None and gw.process.pid == pid  # no restart
    log = gw.log()
    assert len(re.findall(r"ERROR .*store down", log)) == 1, log[-3000:]
    assert not re.findall(r"ERROR .*request-rate store failed", log), log[-3000:]


def test_a_reload_to_another_redis_moves_every_part_of_the_process_and_lets_the_old_one_go(
        tmp_path: Path, standin: Standin, redis_server: RedisServer,
        gateway_factory: Callable[..., RunningGateway]) -> None:
    """One store per process (gateway/store/handle.py): a reload that changes the store settings
    moves the login path and the rate limit together, and the old store's connections close."""
    other = start_redis(tmp_path / "redis-b")
    try:
        bases = [base_entry(standin, "b1", "Склад", user_auth=True, rate_limit={"rate": "100r/s", "burst": 100})]

        def cfg(url: str) -> dict[str, Any]:
            return gateway_config(tmp_path, standin, bases=bases, store={"backend": "redis", "redis_url": url},
                                  auth={"cache_seconds": 0})

        gw = gateway_factory(cfg(redis_server.url), directory=tmp_path / "gw")
        add_user(gw.directory)
        assert wait_for_login(gw, RECOVERY_LIMIT) < RECOVERY_LIMIT
        assert redis_server.client().keys("gw:rate:*")

        gw.reload(cfg(other.url))
        add_user(gw.directory)  # the same user in the new store (the CLI reads the new file)
        with client(gw, "b1") as c:
            assert c.get("/echo", headers=basic(PASSWORD)).status_code == 200
        assert other.client().keys("gw:rate:*"), "the rate limit did not move to the new store"
        deadline = time.monotonic() + 5
        while True:  # the old store's pool closed: no connection but this question's is left there
            others = [c for c in redis_server.client().client_list() if c.get("cmd") != "client|list"]
            if not others:
                break
            assert time.monotonic() < deadline, f"connections still open to the old store: {others}"
            time.sleep(0.2)
        assert gw.process.poll() is None  # a reload, not a restart
        assert "store changed in the configuration; this takes effect only after a restart" not in gw.log()
    finally:
        other.stop()
