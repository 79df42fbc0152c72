"""Redis mode: what the console on one machine changes is live on another machine at once."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path
from typing import Callable

import httpx
import pytest

from gateway.store import keys
from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config
from tests.redis_server import RedisServer
from tests.e2e.test_console import ConsoleClient, _flash

ADMIN_PASSWORD = "Redis-Adm1n-Пароль"
USER_PASSWORD, NEW_PASSWORD = "Mashina-A-2024", "Mashina-A-2025"



def test_console_on_machine_a_changes_machine_b(tmp_path: Path, standin: Standin, redis_server: RedisServer,
                                               gateway_factory: Callable[..., RunningGateway]) -> None:
    store = {"backend": "redis", "redis_url": redis_server.url}
    admin_port = free_port()
    a = gateway_factory(gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", "Склад", user_auth=True)],
                                       store=store, admin={"enabled": True, "host": "127.0.0.1",
                                                           "listen": admin_port}),
                        directory=tmp_path / "a")
    b_state = tmp_path / "b" / "state"
    b_state.mkdir(parents=True)
    shutil.copyfile(a.state_dir / keys.SECRET_FILE, b_state / keys.SECRET_FILE)
    b = gateway_factory(gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", "Склад", user_auth=True)],
                                       store=store), directory=tmp_path / "b")
    cli_ok(a.directory, "group", "add", "Админы", "--role", "admin", "--doc-type", "Поступление")
    cli_ok(a.directory, "user", "add", "admin", "--group", "Админы", "--password-stdin",
           input=ADMIN_PASSWORD + "\n")
    on_b = b.url("b1", path="/echo/x")
    verify_b = ssl.create_default_context(cafile=b.ca_file)

    console = ConsoleClient(f"http://127.0.0.1:{admin_port}")
    try:
        assert console.login("admin", ADMIN_PASSWORD).status_code == 303
        assert _flash(console.post("/console/groups/add", {"name": "ТСД", "role": "mobile",
                                                           "doc_types": "Поступление"})).startswith("ok")
        assert _flash(console.post("/console/users/add", {"name": "сидоров", "group": "ТСД",
                                                          "password": USER_PASSWORD,
                                                          "password2": USER_PASSWORD})).startswith("ok")
        assert httpx.get(on_b, auth=("сидоров", USER_PASSWORD), verify=verify_b, timeout=10).status_code == 200
        assert _flash(console.post("/console/users/password", {"user": "сидоров", "password": NEW_PASSWORD,
                                                               "password2": NEW_PASSWORD})).startswith("ok")
        assert httpx.get(on_b, auth=("сидоров", USER_PASSWORD), verify=verify_b, timeout=10).status_code == 401
        assert httpx.get(on_b, auth=("сидоров", NEW_PASSWORD), verify=verify_b, timeout=10).status_code == 200

        # a ban made on machine B, listed and lifted in machine A's console
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.9", verify=verify_b),
                          timeout=10) as guesser:
            for _ in range(10):
                guesser.get(on_b, auth=("сидоров", "guess"))
            assert guesser.get(on_b, auth=("сидоров", NEW_PASSWORD)).status_code == 429
            assert 'data-target="127.0.0.9"' in console.http.get("/console/iplists").text
            lifted = console.post("/console/bans/lift", {"target": "127.0.0.9"}, page="/console/iplists")
            assert "lifted" in _flash(lifted)
            assert guesser.get(on_b, auth=("сидоров", NEW_PASSWORD)).status_code == 200
    finally:
        console.close()
