"""Two gateways on two "machines" (own state folders) sharing a Redis store and one pebble CA:
one orders at a time, the CA's HTTP-01 request may land on the other machine, and both serve
the one certificate."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from gateway.store import keys
from gateway.store.redis import RedisStore
from tests import pebble_server
from tests.harness import RunningGateway, Standin, base_entry, free_port, gateway_config, run_gateway_command
from tests.redis_server import RedisServer
from tests.e2e.test_acme_pebble import NAME, served_sha256

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
