"""Two gateways on two "machines" (own state folders) sharing a Redis store and one pebble CA:
one orders at a time, the CA's HTTP-01 request may land on the other machine, and both serve
the one certificate."""

from __future__ import annotations

import re
import shutil
import ssl
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from gateway.store import keys
from gateway.store.redis import RedisStore
from tests import pebble_server
from tests.harness import (
    RunningGateway, Standin, _write_yaml, base_entry, cli_ok, free_port, gateway_config, run_gateway_command,
)
from tests.redis_server import RedisServer, restart, stop_keeping_data
from tests.e2e.test_acme_pebble import NAME, served_sha256, wait_for_issued

pytestmark = pytest.mark.skipif(not pebble_server.available() or shutil.which("redis-server") is None,
                                reason="pebble or redis-server not installed (scripts/system-deps.sh)")



def test_one_machine_orders_the_other_answers_the_challenge_and_both_serve_it(
        tmp_path: Path, standin: Standin, redis_server: RedisServer,
        gateway_factory: Callable[..., RunningGateway]) -> None:
    pebble = pebble_server.start_pebble(tmp_path / "pebble", http_port=free_port())
    try:
        store = RedisStore(redis_server.url)
        # Someone else holds the order lease while both machines start: neither orders yet.
        assert store.try_lock("acme-order", "third-machine:1", 120)

        def machine(name: str, challenge_port: int) -> RunningGateway:
            config = gateway_config(
                tmp_path, standin, bases=[base_entry(standin, "b1", tls={"acme": [NAME]})],
                store={"backend": "redis", "redis_url": redis_server.url},
                acme={"enabled": True, "directory": pebble.directory, "challenge_listen": challenge_port,
                      "ca_bundle": str(pebble.ca_bundle)})
            return gateway_factory(config, directory=tmp_path / name)

        # Only machine A is where pebble's HTTP-01 requests arrive (the router forwards port 80 to it).
        a = machine("a", pebble.http_port)
        b_state = tmp_path / "b" / "state"
        b_state.mkdir(parents=True)
        shutil.copyfile(a.state_dir / keys.SECRET_FILE, b_state / keys.SECRET_FILE)
        b = machine("b", free_port())
        for gw in (a, b):
            gw.wait_for_log("another gateway is ordering certificates", 20)
        store.unlock("acme-order", "third-machine:1")

        # Machine B orders; pebble validates on machine A, which answers from the shared store.
        ordered = run_gateway_command(b.directory, "cert", "acme", "renew")
        assert ordered.returncode == 0, ordered.stdout + ordered.stderr + pebble.log()[-2000:]
        root = tmp_path / "root.pem"
        root.write_bytes(pebble.root_pem())
        b.wait_for_log(r"certificate .*certificate\.pem replaced", 10)
        on_b = served_sha256(b.port("b1"), root, NAME)

        # Machine A takes the result from the store instead of ordering again.
        taken = run_gateway_command(a.directory, "cert", "acme", "renew")
        assert taken.returncode == 0 and "Nothing is due" in taken.stdout, taken.stdout + taken.stderr
        a.wait_for_log(r"certificate .*certificate\.pem replaced", 10)
        assert served_sha256(a.port("b1"), root, NAME) == on_b
        assert pebble.log().count("Issued certificate serial") == 1
        store.close()
    finally:
        pebble.stop()


def test_redis_down_at_start_the_bases_serve_and_acme_orders_once_it_returns(
        tmp_path: Path, standin: Standin, redis_server: RedisServer,
        gateway_factory: Callable[..., RunningGateway], request: pytest.FixtureRequest) -> None:
    """Issue 19, fault 1 with ACME on: a reboot during a Redis outage still gets its gateway. The
    base serves the local CA's placeholder until the first order; the order waits for the store
    (it needs the store's lock) and goes ahead by itself once Redis answers, with no restart."""
    pebble = pebble_server.start_pebble(tmp_path / "pebble", http_port=free_port())
    request.addfinalizer(pebble.stop)
    config = gateway_config(
        tmp_path, standin, bases=[base_entry(standin, "b1", tls={"acme": [NAME]})],
        store={"backend": "redis", "redis_url": redis_server.url},
        acme={"enabled": True, "directory": pebble.directory, "challenge_listen": pebble.http_port,
              "ca_bundle": str(pebble.ca_bundle), "allow_private": True})
    directory = tmp_path / "gw"
    directory.mkdir()
    _write_yaml(directory / "gateway.yaml", config)
    # The first gateway command publishes the HMAC key's fingerprint, as a first start would.
    cli_ok(directory, "group", "add", "Операторы", "--role", "mobile", "--doc-type", "Поступление")
    stop_keeping_data(redis_server)

    gw = gateway_factory(config, directory=directory)
    gw.wait_for_log(r"WARNING .*ACME orders and renewals wait for the store", 20)
    placeholder = served_sha256(gw.port("b1"), Path(gw.ca_file), NAME)  # the local CA's, verified
    with httpx.Client(verify=ssl.create_default_context(cafile=gw.ca_file), timeout=15) as c:
        assert c.get(gw.url("b1", path="/echo"), extensions={"sni_hostname": NAME}).status_code == 200
    assert "Issued certificate serial" not in pebble.log()

    back = restart(redis_server)
    request.addfinalizer(back.stop)
    returned = time.monotonic()
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(pebble.root_pem())
    issued = wait_for_issued(gw, gw.port("b1"), root, NAME, timeout=60)
    took = time.monotonic() - returned
    print(f"\nthe ACME certificate served {took:.2f} s after Redis answered again")
    assert issued != placeholder
    assert gw.process.poll() is None
    log = gw.log()
    assert "the store answers again; ACME orders and renewals resume" in log
    assert len(re.findall(r"ACME orders and renewals wait for the store", log)) == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
