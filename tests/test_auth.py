"""The Auth addon in-process, on mitmproxy test flows: the decisions and the argon2 count."""

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from mitmproxy.test import tflow

from addons import _context
from addons.auth import Auth
from gateway.accounts import Accounts, keys
from gateway.config import GatewayConfig, parse_config
from gateway.store import SqliteStore

PORT = 19706
PASSWORD, BARCODE = "Secret123", "4600000000017"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "_hasher", PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))


def make_config(tmp_path: Path, **base: Any) -> GatewayConfig:
    entry = {"id": "b1", "name": 'Склад "15"', "user_auth": True,
             "data": {"listen": PORT, "backend": "http://127.0.0.1:1"}, **base}
    return parse_config({"state_dir": str(tmp_path / "state"), "bases": [entry]}, tmp_path / "gateway.yaml")


@pytest.fixture
def auth(tmp_path: Path) -> Auth:
    cfg = make_config(tmp_path)
    accounts = Accounts(SqliteStore(cfg.state_dir / "gateway.db"), keys.load_or_create_secret(cfg.state_dir))
    accounts.add_group("Операторы ТСД", "mobile", ("Приход",))
    accounts.add_user("Иванов", "1", PASSWORD, barcode=BARCODE)
    _context.set_current_config(cfg)
    addon = Auth()
    addon.apply_config(cfg)
    yield addon
    addon.done()


def request(addon: Auth, headers: dict[str, str] | None = None, path: str = "/api/v1/Docs",
            method: str = "GET", client: str = "127.0.0.2") -> Any:
    flow = tflow.tflow()
    flow.client_conn.sockname = ("127.0.0.1", PORT)
    flow.client_conn.peername = (client, 50000)
    flow.request.path = path
    flow.request.method = method
    for name, value in (headers or {}).items():
        flow.request.headers[name] = value
    asyncio.run(addon.requestheaders(flow))
    return flow


def basic(login: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


def test_success_sets_identity_for_later_addons(auth: Auth) -> None:
    flow = request(auth, basic("", PASSWORD))
    assert flow.response is None
    assert flow.metadata["gateway_user"] == "Иванов"
    assert flow.metadata["gateway_role"] == "mobile"
    assert flow.metadata["gateway_doc_types"] == ("Приход",)
    assert "gateway_verdict" not in flow.metadata


def test_missing_credentials_get_a_challenge_with_the_escaped_base_name(auth: Auth) -> None:
    flow = request(auth)
    assert flow.response.status_code == 401
    assert flow.response.headers["WWW-Authenticate"] == 'Basic realm="Склад \\"15\\"", charset="UTF-8"'
    assert flow.metadata["gateway_verdict"] == "denied-auth"


def test_argon2_runs_once_for_a_hundred_requests(auth: Auth) -> None:
    for _ in range(100):
        assert request(auth, basic("Иванов", PASSWORD)).response is None
    assert auth.authenticator is not None and auth.authenticator.argon2_runs == 1


def test_barcode_only_where_the_base_allows_it(auth: Auth, tmp_path: Path) -> None:
    assert request(auth, basic("", BARCODE)).response.status_code == 401
    cfg = make_config(tmp_path, login_by_barcode=True)
    _context.set_current_config(cfg)
    auth.apply_config(cfg)
    assert request(auth, basic("", BARCODE)).response is None


def test_eleventh_attempt_is_throttled_without_checking(auth: Auth) -> None:
    for _ in range(10):
        assert request(auth, {"Authorization": "Basic :Wrong1234"}).response.status_code == 401
    runs = auth.authenticator.argon2_runs if auth.authenticator else 0
    flow = request(auth, basic("", PASSWORD))
    assert flow.response.status_code == 429
    assert 55 <= int(flow.response.headers["Retry-After"]) <= 60
    assert flow.metadata["gateway_verdict"] == "throttled"
    assert auth.authenticator is not None and auth.authenticator.argon2_runs == runs
    assert request(auth, basic("", PASSWORD), client="127.0.0.3").response is None


def test_malformed_credentials_count_as_failures(auth: Auth) -> None:
    for _ in range(10):
        assert request(auth, {"Authorization": "Basic !!!"}).response.status_code == 401
    assert request(auth, basic("", PASSWORD)).response.status_code == 429


def test_whitelisted_address_is_never_throttled(auth: Auth, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("addons.auth.is_whitelisted", lambda client: True)
    for _ in range(15):
        assert request(auth, {"Authorization": "Basic :Wrong1234"}).response.status_code == 401
    assert request(auth, basic("", PASSWORD)).response is None


def test_login_logout_and_session_token(auth: Auth) -> None:
    assert request(auth, basic("", PASSWORD), path="/.gateway/login").response.status_code == 405
    flow = request(auth, basic("", PASSWORD), path="/.gateway/login", method="POST")
    assert flow.response.status_code == 200
    token = json.loads(flow.response.content)["token"]
    cookie = flow.response.headers["Set-Cookie"]
    assert cookie.startswith(f"gateway_session={token};")
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict"):
        assert attribute in cookie
    by_header = request(auth, {"X-Gateway-Session": token})
    assert by_header.response is None and by_header.metadata["gateway_user"] == "Иванов"
    assert "X-Gateway-Session" not in by_header.request.headers
    by_cookie = request(auth, {"Cookie": f"a=1; gateway_session={token}"})
    assert by_cookie.response is None
    assert "gateway_session" not in by_cookie.request.headers.get("Cookie", "")  # not forwarded
    out = request(auth, {"X-Gateway-Session": token}, path="/.gateway/logout", method="POST")
    assert out.response.status_code == 200 and "Max-Age=0" in out.response.headers["Set-Cookie"]
    assert request(auth, {"X-Gateway-Session": token}).response.status_code == 401
    assert request(auth, basic("", PASSWORD), path="/.gateway/other").response.status_code == 404


def test_base_without_user_auth_passes_untouched(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, user_auth=False)
    _context.set_current_config(cfg)
    addon = Auth()
    addon.apply_config(cfg)
    assert request(addon).response is None
    assert request(addon, path="/.gateway/login", method="POST").response.status_code == 404
    addon.done()


def test_a_failing_store_fails_closed(auth: Auth, tmp_path: Path) -> None:
    import sqlite3
    sqlite3.connect(tmp_path / "state" / "gateway.db").execute("DROP TABLE failures")
    flow = request(auth, basic("", PASSWORD))
    assert flow.response.status_code == 503
    assert flow.metadata["gateway_verdict"] == "gateway-error"
    assert PASSWORD not in flow.response.text


def test_an_unexpected_error_fails_closed(auth: Auth, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("bug")
    monkeypatch.setattr(auth._state.throttle, "check_ip", boom)  # type: ignore[union-attr]
    flow = request(auth, basic("", PASSWORD))
    assert flow.response.status_code == 500
