"""Issue 23 point 16: request-rate limits (nginx's limit_req) counted in the store, so two
workers of one machine and two machines on one Redis count together; whitelisted addresses
are exempt; past the burst: 429 with Retry-After."""

from __future__ import annotations

import math
import os
import shutil
import signal
import ssl
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.harness import RunningGateway, Standin, base_entry, gateway_config
from tests.redis_server import RedisServer

Factory = Callable[..., RunningGateway]


def fresh_get(gw: RunningGateway, base_id: str = "b1", source: str = "127.0.0.1") -> httpx.Response:
    """One request on a new connection, so the kernel picks a worker for each."""
    transport = httpx.HTTPTransport(local_address=source, verify=ssl.create_default_context(cafile=gw.ca_file))
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(gw.url(base_id, path="/echo"))


@pytest.mark.skipif(not hasattr(signal, "SIGKILL") or os.name != "posix", reason="workers need Linux")
def test_two_workers_share_one_bucket_per_address_and_the_whitelist_is_exempt(
        standin: Standin, gateway_factory: Factory, tmp_path: Path) -> None:
    directory = tmp_path / "gw"
    server = directory / "bases" / "b1" / "Server"
    server.mkdir(parents=True)
    (server / "whitelist.dat").write_text("127.0.0.3\n", encoding="utf-8")
    limited = base_entry(standin, "b1", "Склад")
    free = base_entry(standin, "b2", "Склад без лимита", rate_limit="off")
    # 6 a minute drains 0.1 a second: within this test, 1 + burst requests fit and no more.
    config = gateway_config(tmp_path, standin, bases=[limited, free], workers=2,
                            limits={"rate": "6r/m", "burst": 4})
    gw = gateway_factory(config, directory=directory)
    started = time.monotonic()
    answers = [fresh_get(gw) for _ in range(10)]
    took = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 5
    # Room for one more comes 10 s after the bucket filled, less what drained while these ran
    # (ten TLS handshakes can take more than a second on a loaded machine).
    assert math.ceil(10 - took) <= int(answers[-1].headers["Retry-After"]) <= 10, (answers[-1].headers, took)
    assert "Too Many Requests" in answers[-1].text
    # Another address has a bucket of its own; the whitelisted one is never limited.
    assert [fresh_get(gw, source="127.0.0.2").status_code for _ in range(6)] == [200] * 5 + [429]
    assert all(fresh_get(gw, source="127.0.0.3").status_code == 200 for _ in range(8))
    assert all(fresh_get(gw, "b2").status_code == 200 for _ in range(8))
    gw.wait_for_log(r"rate limit: 127\.0\.0\.1 on base 'Склад' over 6r/m \(burst 4\); answering 429")


def test_two_machines_on_one_redis_share_the_count(standin: Standin, gateway_factory: Factory, tmp_path: Path,
                                                   redis_server: RedisServer) -> None:
    def machine(name: str) -> RunningGateway:
        base = base_entry(standin, "b1", "Склад", rate_limit={"rate": "1r/m", "burst": 2})
        return gateway_factory(gateway_config(tmp_path, standin, bases=[base],
                                              store={"backend": "redis", "redis_url": redis_server.url}),
                               directory=tmp_path / name)

    first = machine("a")
    # Machines sharing a Redis share the HMAC key file (the operator copies it).
    (tmp_path / "b" / "state").mkdir(parents=True)
    shutil.copy2(first.state_dir / "auth-hmac.key", tmp_path / "b" / "state" / "auth-hmac.key")
    second = machine("b")
    assert [fresh_get(first).status_code for _ in range(3)] == [200] * 3
    refused = fresh_get(second)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert fresh_get(first).status_code == 429
    assert any(key == "gw:rate:b1|127.0.0.1" for key in redis_server.client().keys("gw:rate:*"))


def test_bad_rate_names_the_key(tmp_path: Path, standin: Standin) -> None:
    from tests.harness import run_gateway_command, _write_yaml

    config = gateway_config(tmp_path, standin, limits={"rate": "10 per second"})
    _write_yaml(tmp_path / "gateway.yaml", config)
    done = run_gateway_command(tmp_path, "check")
    assert done.returncode != 0 and "limits.rate" in done.stdout + done.stderr and "10r/s" in done.stdout + done.stderr
