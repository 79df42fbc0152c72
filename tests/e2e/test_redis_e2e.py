"""Two "machines" on one Redis: two gateway processes with separate state folders, over real HTTPS.

Each gateway has its own state folder (its own CA, its own copy of the HMAC key file, copied by
the operator) and the same ``store: {backend: redis}``; users, failed-login counts, bans and
sessions are shared through a real redis-server, which never holds the key itself. A machine
with another key file refuses to start. Three gateway starts in all.
"""

from __future__ import annotations

import base64
import re
import shutil
import ssl
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import yaml

from gateway.store import keys
from tests.harness import (
    START_TIMEOUT, RunningGateway, Standin, base_entry, cli_ok, gateway_config, run_gateway_command, start_gateway,
)
from tests.redis_server import RedisServer, assert_key_not_in_redis, start_redis, stored_bytes

PASSWORD, NEW_PASSWORD, WRONG = "Sklad2024x", "Novyi2025Y", "Wrong12345"
SECRETS = (PASSWORD, NEW_PASSWORD, WRONG)



def b64(login: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


def client(gw: RunningGateway, source: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source, verify=ssl.create_default_context(cafile=gw.ca_file))
    return httpx.Client(transport=transport, base_url=gw.url("b1"), timeout=10)


def cli(gw: RunningGateway, *args: str, input: str | None = None) -> str:
    return cli_ok(gw.directory, *args, input=input, secrets=SECRETS)


def machine_config(tmp_path: Path, standin: Standin, redis_url: str) -> dict[str, Any]:
    base = base_entry(standin, "b1", "Склад 15", user_auth=True)
    return gateway_config(tmp_path, standin, bases=[base], store={"backend": "redis", "redis_url": redis_url})


def test_two_machines_share_users_counts_bans_and_sessions(
        tmp_path: Path, standin: Standin, redis_server: RedisServer,
        gateway_factory: Callable[..., RunningGateway]) -> None:
    a = gateway_factory(machine_config(tmp_path, standin, redis_server.url), directory=tmp_path / "a")
    # The operator sets up the second machine with the first one's key file, as docs/REDIS.md says.
    b_state = tmp_path / "b" / "state"
    b_state.mkdir(parents=True)
    shutil.copyfile(a.state_dir / keys.SECRET_FILE, b_state / keys.SECRET_FILE)
    b = gateway_factory(machine_config(tmp_path, standin, redis_server.url), directory=tmp_path / "b")
    assert a.state_dir != b.state_dir == b_state
    assert keys.load_or_create_secret(a.state_dir) == keys.load_or_create_secret(b.state_dir)

    # --- a user made with machine A's CLI logs in on machine B ---
    cli(a, "group", "add", "Операторы ТСД", "--role", "mobile", "--doc-type", "Поступление")
    cli(a, "user", "add", "Иванов", "--group", "Операторы ТСД", "--password-stdin", input=PASSWORD + "\n")
    assert "Иванов" in cli(b, "user", "list")
    with client(b) as on_b, client(a) as on_a:
        assert on_b.get("/echo", headers=b64("", PASSWORD)).status_code == 200  # via the shared keyed index
        assert on_b.get("/echo", headers=b64("Иванов", PASSWORD)).status_code == 200
        login = on_b.post("/.gateway/login", headers=b64("", PASSWORD))
        assert login.status_code == 200
        # JSON answers keep Cyrillic readable (issue 23 point 15), not \u-escaped.
        assert '"user": "Иванов"' in login.content.decode("utf-8")
        token = login.json()["token"]
        assert on_a.get("/echo", headers={"X-Gateway-Session": token}).status_code == 200  # B's session on A

    # --- failures on A and B add up; the 11th is refused on either ---
    with client(a, "127.0.0.2") as attacker_a, client(b, "127.0.0.2") as attacker_b, \
            client(a, "127.0.0.3") as other:
        for _ in range(5):
            assert attacker_a.get("/echo", headers=b64("", WRONG)).status_code == 401
            assert attacker_b.get("/echo", headers=b64("", WRONG)).status_code == 401
        for attacker in (attacker_a, attacker_b):
            refused = attacker.get("/echo", headers=b64("", PASSWORD))
            assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
        assert other.get("/echo", headers=b64("", PASSWORD)).status_code == 200
        assert "127.0.0.2" in cli(a, "bans", "list")

        # --- lifted on B, free on A ---
        assert "lifted" in cli(b, "bans", "lift", "127.0.0.2")
        assert attacker_a.get("/echo", headers=b64("", PASSWORD)).status_code == 200

    # --- a password change on B ends the old password and the session on A at once ---
    with client(a) as on_a:
        assert on_a.get("/echo", headers=b64("", PASSWORD)).status_code == 200  # now cached on A
        cli(b, "user", "passwd", "Иванов", "--password-stdin", input=NEW_PASSWORD + "\n")
        assert on_a.get("/echo", headers=b64("", PASSWORD)).status_code == 401
        assert on_a.get("/echo", headers={"X-Gateway-Session": token}).status_code == 401
        assert on_a.get("/echo", headers=b64("", NEW_PASSWORD)).status_code == 200

    # --- Redis holds users, hashes, sessions and failures, but never the key ---
    assert_key_not_in_redis(redis_server, keys.load_or_create_secret(a.state_dir))

    # --- Redis down: requests fail closed with 503 and never reach the back end ---
    redis_server.stop()
    before = standin.log_path.read_text(encoding="utf-8", errors="replace").count("/echo")
    with client(a) as on_a:
        assert on_a.get("/echo", headers=b64("", NEW_PASSWORD)).status_code == 503
    after = standin.log_path.read_text(encoding="utf-8", errors="replace").count("/echo")
    assert after == before
    a.stop()
    b.stop()

    for text in (a.log(), b.log()):
        for secret in SECRETS + (token,):
            assert secret not in text
    assert len(re.findall(r"ERROR +gateway.store: store down: Redis store", a.log())) == 1  # once, not per request


def test_a_machine_with_another_key_file_refuses_to_start_and_writes_nothing(
        tmp_path: Path, standin: Standin, redis_server: RedisServer) -> None:
    config = machine_config(tmp_path, standin, redis_server.url)
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    for directory in (a_dir, b_dir):
        directory.mkdir()
        (directory / "gateway.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    cli_a = run_gateway_command(a_dir, "group", "add", "Операторы ТСД", "--role", "mobile", "--doc-type", "Поступление")
    assert cli_a.returncode == 0, cli_a.stderr
    cli_a = run_gateway_command(a_dir, "user", "add", "Иванов", "--group", "Операторы ТСД", "--password-stdin",
                                input=PASSWORD + "\n")
    assert cli_a.returncode == 0, cli_a.stderr
    key_a = keys.load_or_create_secret(a_dir / "state")
    key_b = keys.load_or_create_secret(b_dir / "state")  # B has a key of its own, not A's
    assert key_a != key_b
    with redis_server.client() as redis_client:
        changes_before = redis_client.info("persistence")["rdb_changes_since_last_save"]
    stored_before = stored_bytes(redis_server)

    def assert_refused(output: str) -> None:
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, output
        assert f"{b_dir / 'state' / keys.SECRET_FILE} differs from the key the other gateways sharing " \
               f"redis://127.0.0.1:{redis_server.port}/0 use; copy auth-hmac.key from a machine already " \
               f"using this Redis into {b_dir / 'state'}" in errors[0]
        for secret in (key_a, key_b):
            assert secret.hex() not in output.lower()
        assert "Traceback" not in output

    refused = run_gateway_command(b_dir, "user", "list")
    assert refused.returncode != 0 and refused.stdout == ""
    assert_refused(refused.stderr)
    assert len(refused.stderr.splitlines()) == 1

    gateway_b = start_gateway(b_dir, config, wait=False)
    try:
        assert gateway_b.process.wait(START_TIMEOUT) != 0
    finally:
        gateway_b.stop()
    assert_refused(gateway_b.log())
    assert "gateway ready" not in gateway_b.log()

    with redis_server.client() as redis_client:
        assert redis_client.info("persistence")["rdb_changes_since_last_save"] == changes_before
    assert stored_bytes(redis_server) == stored_before
    assert keys.load_or_create_secret(b_dir / "state") == key_b  # B's file is left as it was
    for secret in (key_a, key_b):
        assert_key_not_in_redis(redis_server, secret)
