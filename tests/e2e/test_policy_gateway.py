"""End to end: real gateway and stand-in processes, real TLS, users made with the CLI.

A forged X-Gateway-User never reaches the back end, a mobile user is held to its document
types, an ambiguous path gets 400, and the gateway's session token stays in the gateway.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import yaml

from tests.harness import RunningGateway, Standin, base_entry, cli_ok, gateway_config

MOBILE_PASSWORD = "Sklad2024Mob"
EXCHANGE_PASSWORD = "Obmen2024Ext"
POSTUPLENIE = "%D0%9F%D0%BE%D1%81%D1%82%D1%83%D0%BF%D0%BB%D0%B5%D0%BD%D0%B8%D0%B5"


def cli(directory: Path, *args: str, secret: str | None = None) -> None:
    cli_ok(directory, *args, input=None if secret is None else secret + "\n")


@pytest.fixture(scope="module")
def gw(standin: Standin, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.harness import start_gateway

    directory = tmp_path_factory.mktemp("gw-policy")
    config = gateway_config(directory, bases=[
        base_entry(standin, "b1", "Склад", user_auth=True),
        base_entry(standin, "b2", "Без Authorization", user_auth=True, forward_authorization=False),
    ])
    (directory / "gateway.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    cli(directory, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Поступление")
    cli(directory, "group", "add", "Обмен", "--role", "external", "--doc-type", "Поступление")
    cli(directory, "user", "add", "Иванов", "--group", "Кладовщики", "--password-stdin", secret=MOBILE_PASSWORD)
    cli(directory, "user", "add", "exchange", "--group", "Обмен", "--password-stdin", secret=EXCHANGE_PASSWORD)
    gateway = start_gateway(directory, config)
    yield gateway
    gateway.stop()


def client(gw: RunningGateway) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=gw.ca_file), timeout=10)


MOBILE = ("", MOBILE_PASSWORD)  # terminals send the password only
EXCHANGE = ("exchange", EXCHANGE_PASSWORD)


def raw_get(gw: RunningGateway, base: str, target: str, auth: tuple[str, str]) -> tuple[int, str]:
    """One HTTP/1.1 request with the target byte for byte as given (httpx would clean it up)."""
    import base64

    context = ssl.create_default_context(cafile=gw.ca_file)
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    with socket.create_connection(("127.0.0.1", gw.port(base)), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
                        "Connection: close\r\n\r\n".encode("utf-8"))
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode("utf-8", "replace")


def test_forged_identity_never_reaches_the_back_end(gw: RunningGateway) -> None:
    with client(gw) as c:
        r = c.get(gw.url("b1", path="/echo"), auth=MOBILE,
                  headers={"X-Gateway-User": "admin", "x-gateway-role": "admin", "X-Gateway-Extra": "1"})
    assert r.status_code == 200, r.text
    seen = r.json()["headers"]
    assert unquote(seen["x-gateway-user"]) == "Иванов"
    assert seen["x-gateway-user"].isascii()
    assert unquote(seen["x-gateway-group"]) == "Кладовщики"
    assert seen["x-gateway-role"] == "mobile"
    assert "x-gateway-extra" not in seen
    assert seen["authorization"].startswith("Basic ")  # forwarded unchanged by default


def test_authorization_dropped_on_a_base_that_says_so(gw: RunningGateway) -> None:
    with client(gw) as c:
        r = c.get(gw.url("b2", path="/echo"), auth=EXCHANGE)
    assert r.status_code == 200, r.text
    assert "authorization" not in r.json()["headers"]
    assert r.json()["headers"]["x-gateway-user"] == "exchange"


def test_session_token_stays_in_the_gateway(gw: RunningGateway) -> None:
    with client(gw) as c:
        login = c.post(gw.url("b1", path="/.gateway/login"), auth=EXCHANGE)
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        r = c.get(gw.url("b1", path="/echo"), headers={"X-Gateway-Session": token, "Cookie": "lang=ru"})
    assert r.status_code == 200, r.text
    echoed = r.text
    assert token not in echoed
    assert "gateway_session" not in echoed
    assert r.json()["headers"]["x-gateway-user"] == "exchange"


@pytest.mark.parametrize(("auth", "method", "path", "allowed"), [
    (MOBILE, "GET", f"/api/v1/Docs/{POSTUPLENIE}", True),
    (MOBILE, "GET", f"/MobileSMARTS/api/v1/Docs/{POSTUPLENIE}", True),
    (MOBILE, "GET", "/api/v1/Products", False),
    (MOBILE, "GET", "/api/v1/DocTypes", False),
    (MOBILE, "GET", "/api/v1/Docs/%D0%9E%D1%82%D0%B3%D1%80%D1%83%D0%B7%D0%BA%D0%B0", False),  # Отгрузка
    (MOBILE, "DELETE", f"/api/v1/Docs/{POSTUPLENIE}", False),
    (MOBILE, "GET", "/echo", True),
    (EXCHANGE, "GET", "/api/v1/Products?$top=1", True),
    (EXCHANGE, "GET", "/api/v1/DocTypes", True),
])
def test_policy_per_role(gw: RunningGateway, auth: tuple[str, str], method: str, path: str, allowed: bool) -> None:
    with client(gw) as c:
        r = c.request(method, gw.url("b1", path=path), auth=auth)
    if allowed:
        assert r.status_code != 403 and not r.text.startswith("403 Forbidden: role"), r.text
    else:
        assert r.status_code == 403
        assert r.text.startswith("403 Forbidden: role mobile may not ")


@pytest.mark.parametrize("target", [
    "/api/v1%2FProducts", "/api/v1/Docs/%2e%2e/Products", "/api%5Cv1/Products", "/a%00b",
    "/api/v1/Docs/..%2FProducts",
])
def test_ambiguous_path_gets_400(gw: RunningGateway, target: str) -> None:
    status, body = raw_get(gw, "b1", target, EXCHANGE)
    assert status == 400
    assert body.startswith("400 Bad Request: ")


def test_dot_segments_are_resolved_before_the_decision(gw: RunningGateway) -> None:
    status, body = raw_get(gw, "b1", f"/api/v1/Docs/{POSTUPLENIE}/../../Products", MOBILE)
    assert status == 403 and "may not GET /api/v1/Products" in body
    status, body = raw_get(gw, "b1", "//echo/./x/..?a=1", MOBILE)
    assert status == 200, body
    assert '"path": "/echo/' in body or '"path":"/echo/' in body


def test_no_password_in_the_gateway_log(gw: RunningGateway) -> None:
    with client(gw) as c:
        c.get(gw.url("b1", path=f"/api/v1/session?username=exchange&password={EXCHANGE_PASSWORD}"), auth=EXCHANGE)
    log = gw.log()
    assert MOBILE_PASSWORD not in log and EXCHANGE_PASSWORD not in log
