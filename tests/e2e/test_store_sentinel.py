"""Issue 19, fault 2: Redis Sentinel. A primary, a replica (``--replicaof``) and one Sentinel
(``redis-server --sentinel``), real processes on 127.0.0.1. The gateway finds the primary through
the Sentinel; the primary is killed, the Sentinel promotes the replica, and logins work again
within 15 s with every user, group and ban the replica had, and the failure count going on.
"""

from __future__ import annotations

import base64
import ssl
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from tests.harness import RunningGateway, Standin, base_entry, cli_ok, gateway_config
from tests.redis_server import RedisServer, start_replica, start_sentinel

PASSWORD, WRONG = "Sklad2024x", "Wrong12345"
MASTER = "gateway"
FAILOVER_LIMIT = 15.0


def basic(secret: str, login: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


def client(gw: RunningGateway, source: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source, verify=ssl.create_default_context(cafile=gw.ca_file))
    return httpx.Client(transport=transport, base_url=gw.url("b1"), timeout=15)


def test_failover_keeps_users_bans_and_counts(
        tmp_path: Path, standin: Standin, redis_server: RedisServer,
        gateway_factory: Callable[..., RunningGateway], request: pytest.FixtureRequest) -> None:
    primary = redis_server
    replica = start_replica(tmp_path / "replica", primary)
    request.addfinalizer(replica.stop)
    sentinel = start_sentinel(tmp_path / "sentinel", primary, MASTER)
    request.addfinalizer(sentinel.stop)
    store = {"backend": "redis", "sentinels": [f"127.0.0.1:{sentinel.port}"], "sentinel_master": MASTER}
    cfg = gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", "Склад", user_auth=True)],
                         store=store, auth={"cache_seconds": 0})
    gw = gateway_factory(cfg, directory=tmp_path / "gw")
    cli_ok(gw.directory, "group", "add", "Операторы", "--role", "mobile", "--doc-type", "Поступление")
    cli_ok(gw.directory, "user", "add", "Иванов", "--group", "Операторы", "--password-stdin",
           input=PASSWORD + "\n", secrets=(PASSWORD,))
    with client(gw) as c, client(gw, "127.0.0.3") as banned, client(gw, "127.0.0.4") as counted:
        assert c.get("/echo", headers=basic(PASSWORD)).status_code == 200
        for _ in range(10):
            assert banned.get("/echo", headers=basic(WRONG)).status_code == 401
        assert banned.get("/echo", headers=basic(WRONG)).status_code == 429
        for _ in range(4):
            assert counted.get("/echo", headers=basic(WRONG)).status_code == 401
        with primary.client() as on_primary:
            assert on_primary.execute_command("WAIT", 1, 5000) == 1  # what the replica has when the primary dies

        primary.process.kill()  # the primary dies
        killed = time.monotonic()
        while True:
            status = c.get("/echo", headers=basic(PASSWORD)).status_code
            if status == 200:
                break
            assert status == 503, status
            assert time.monotonic() - killed < FAILOVER_LIMIT, f"no login within {FAILOVER_LIMIT} s of the failover"
            time.sleep(0.1)
        took = time.monotonic() - killed
        print(f"\nlogin works {took:.2f} s after the primary was killed (Sentinel down-after 1 s)")
        with replica.client() as promoted:
            assert promoted.info("replication")["role"] == "master"

        assert "Иванов" in cli_ok(gw.directory, "user", "list")
        assert "Операторы" in cli_ok(gw.directory, "group", "list")
        assert banned.get("/echo", headers=basic(PASSWORD)).status_code == 429  # the ban held
        assert "127.0.0.3" in cli_ok(gw.directory, "bans", "list")
        for _ in range(6):  # 4 before the failover + 6 after = the limit of 10
            assert counted.get("/echo", headers=basic(WRONG)).status_code == 401
        assert counted.get("/echo", headers=basic(WRONG)).status_code == 429
    assert gw.process.poll() is None
