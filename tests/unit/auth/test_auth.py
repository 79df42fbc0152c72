"""The Auth addon in-process, on mitmproxy test flows: the decisions and the argon2 count."""

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from dataclasses import replace

import pytest
from argon2 import PasswordHasher
from mitmproxy.test import tflow

from addons import _context
from addons.auth import Auth
from gateway.accounts import Accounts
from gateway.store import keys
from gateway.auth.authenticate import Authenticator
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


def request_flow(headers: dict[str, str] | None = None, path: str = "/api/v1/Docs",
                 method: str = "GET", client: str = "127.0.0.2") -> Any:
    flow = tflow.tflow()
    flow.client_conn.sockname = ("127.0.0.1", PORT)
    flow.client_conn.peername = (client, 50000)
    flow.request.path = path
    flow.request.method = method
    for name, value in (headers or {}).items():
        flow.request.headers[name] = value
    return flow


def request(addon: Auth, headers: dict[str, str] | None = None, path: str = "/api/v1/Docs",
            method: str = "GET", client: str = "127.0.0.2") -> Any:
    flow = request_flow(headers, path, method, client)
    step = addon.requestheaders(flow)
    if step is not None:  # only the slow path (argon2, a store write) is a coroutine
        asyncio.run(step)
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


# --- the cost of a cached login, and sharing one verification ---

def test_a_cached_login_is_answered_synchronously_reading_only_the_change_marker(
        auth: Auth, monkeypatch: pytest.MonkeyPatch) -> None:
    assert request(auth, basic("Иванов", PASSWORD)).response is None  # verifies, caches
    store = auth._state.store  # type: ignore[union-attr]
    reads = {"version": 0}
    real_version = store.version

    def counted_version() -> int:
        reads["version"] += 1
        return real_version()

    def refused(*args: Any) -> None:
        raise AssertionError("the cache-hit path read the store")

    monkeypatch.setattr(store, "version", counted_version)
    for name in ("principal", "failure_times", "find_credential", "get_session", "get_user"):
        monkeypatch.setattr(store, name, refused)
    for _ in range(20):
        flow = request_flow(basic("Иванов", PASSWORD))
        assert auth.requestheaders(flow) is None  # no coroutine: no thread hop, nothing awaited
        assert flow.response is None and flow.metadata["gateway_user"] == "Иванов"
    assert reads["version"] == 20  # one read of the marker per request, nothing else


def test_concurrent_requests_with_one_credential_share_one_argon2_run(auth: Auth) -> None:
    assert auth.authenticator is not None
    flows = [request_flow(basic("", PASSWORD)) for _ in range(16)]
    steps = [auth.requestheaders(flow) for flow in flows]
    assert all(step is not None for step in steps)  # all missed the cache at the same moment

    async def run_all() -> None:
        await asyncio.gather(*steps)  # type: ignore[arg-type]

    asyncio.run(run_all())
    assert auth.authenticator.argon2_runs == 1
    assert all(flow.response is None and flow.metadata["gateway_user"] == "Иванов" for flow in flows)


def test_concurrent_wrong_passwords_share_one_check_but_each_counts_as_a_failure(
        auth: Auth, monkeypatch: pytest.MonkeyPatch) -> None:
    assert auth.authenticator is not None and auth._state is not None
    checks = []
    real_verify = auth.authenticator.verify

    def counted_verify(*args: Any) -> Any:
        checks.append(1)
        return real_verify(*args)

    monkeypatch.setattr(auth.authenticator, "verify", counted_verify)
    flows = [request_flow(basic("Иванов", "Wrong12345"), client="127.0.0.5") for _ in range(6)]
    steps = [auth.requestheaders(flow) for flow in flows]

    async def run_all() -> None:
        await asyncio.gather(*steps)  # type: ignore[arg-type]

    asyncio.run(run_all())
    # Each attempt reserves its place in a store thread first, so a cheap rejection (no such
    # password: no argon2) may land before the next attempt starts; they share it when they overlap.
    assert 1 <= len(checks) <= 6
    assert [flow.response.status_code for flow in flows] == [401] * 6
    assert len(auth._state.store.failure_times("ip:127.0.0.5", 0.0)) == 6
    assert len(auth._state.store.failure_times("user:иванов", 0.0)) == 6
    assert auth._state.logins._flights == {}  # nothing kept once the verification landed


def test_a_password_change_elsewhere_ends_the_cached_login_at_once(auth: Auth, tmp_path: Path) -> None:
    assert request(auth, basic("", PASSWORD)).response is None
    assert request(auth, basic("", PASSWORD)).response is None
    # another process: its own store object on the same file
    other = Accounts(SqliteStore(tmp_path / "state" / "gateway.db"),
                     keys.load_or_create_secret(tmp_path / "state"))
    other.set_password("Иванов", "Another123")
    assert request(auth, basic("", PASSWORD)).response.status_code == 401
    assert request(auth, basic("", "Another123")).response is None
    other.remove_user("Иванов")
    assert request(auth, basic("", "Another123")).response.status_code == 401


# --- the success cache itself (gateway.auth.authenticate), with an injected clock ---

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def accounts(tmp_path: Path) -> Accounts:
    state = tmp_path / "state"
    accounts = Accounts(SqliteStore(state / "gateway.db"), keys.load_or_create_secret(state))
    accounts.add_group("Операторы ТСД", "mobile", ("Приход",))
    accounts.add_user("Иванов", "1", PASSWORD)
    return accounts


def test_an_entry_slides_with_use_but_is_verified_again_after_its_maximum_age(accounts: Accounts) -> None:
    clock = Clock()
    authenticator = Authenticator(accounts.store, accounts.secret, cache_seconds=30, clock=clock)
    assert authenticator.verify("", PASSWORD, False).ok
    verified_at = clock.now
    while clock.now + 20 < verified_at + authenticator.max_age:
        clock.now += 20  # used every 20 s: longer than 30 s in all, never idle for 30 s
        assert authenticator.cached("", PASSWORD, False) is not None
    clock.now = verified_at + authenticator.max_age
    assert authenticator.cached("", PASSWORD, False) is None  # argon2 again, however busy
    assert authenticator.verify("", PASSWORD, False).ok
    clock.now += 30  # idle for cache_seconds
    assert authenticator.cached("", PASSWORD, False) is None
    assert authenticator.argon2_runs == 2


def test_a_change_anywhere_revalidates_once_and_picks_up_the_new_group(accounts: Accounts) -> None:
    authenticator = Authenticator(accounts.store, accounts.secret, cache_seconds=30)
    assert authenticator.verify("", PASSWORD, False).ok
    reads = []
    real_principal = accounts.store.principal

    def counted_principal(user_id: str) -> Any:
        reads.append(user_id)
        return real_principal(user_id)

    accounts.store.principal = counted_principal  # type: ignore[method-assign]
    for _ in range(5):
        assert authenticator.cached("", PASSWORD, False) is not None
    assert reads == []
    other = SqliteStore(accounts.store.path)  # type: ignore[attr-defined]
    group = other.find_group("Операторы ТСД")
    assert group is not None
    other.put_group(replace(group, doc_types=("Приход", "Отгрузка")), replace=True)
    for _ in range(5):
        principal = authenticator.cached("", PASSWORD, False)
        assert principal is not None and principal.group.doc_types == ("Приход", "Отгрузка")
    assert reads == ["1"]  # once after the change, then from memory again
    assert authenticator.argon2_runs == 1


def test_near_its_maximum_age_an_entry_is_verified_again_in_the_background(auth: Auth) -> None:
    authenticator, state = auth.authenticator, auth._state
    assert authenticator is not None and state is not None
    clock = Clock()
    authenticator.clock = clock
    assert request(auth, basic("", PASSWORD)).response is None
    verified_at = clock.now
    while clock.now + 20 < verified_at + authenticator.max_age * 0.9:
        clock.now += 20
        flow = request_flow(basic("", PASSWORD))
        assert auth.requestheaders(flow) is None and flow.response is None
    clock.now = verified_at + authenticator.max_age * 0.95

    async def near_the_end() -> list[Any]:
        flows = [request_flow(basic("", PASSWORD)) for _ in range(5)]
        steps = [auth.requestheaders(flow) for flow in flows]
        await asyncio.gather(*[step for step in steps if step is not None])
        # answered at once from the entry that still holds; one verification runs meanwhile
        assert all(flow.response is None and flow.metadata["gateway_user"] == "Иванов" for flow in flows)
        assert len(state.logins._flights) == 1
        await asyncio.gather(*state.logins._flights.values())
        return flows

    asyncio.run(near_the_end())
    assert authenticator.argon2_runs == 2
    clock.now = verified_at + authenticator.max_age + 1  # past the first verification's age
    flow = request_flow(basic("", PASSWORD))
    assert auth.requestheaders(flow) is None and flow.response is None  # the renewed entry serves
    assert authenticator.argon2_runs == 2


def _on(connection_of: Any, headers: dict[str, str]) -> Any:
    """A request on the same client connection as ``connection_of`` (a keep-alive connection)."""
    flow = request_flow(headers)
    flow.client_conn = connection_of.client_conn
    return flow


def _run(addon: Auth, flow: Any) -> Any:
    step = addon.requestheaders(flow)
    if step is not None:
        asyncio.run(step)
    return flow


def test_a_connections_remembered_credentials_never_outlive_a_change(auth: Auth, tmp_path: Path) -> None:
    """The header read once per connection: a password change, a removed user or another header on
    the same connection is decided afresh at once; a closed connection forgets it."""
    first = _run(auth, request_flow(basic("Иванов", PASSWORD)))
    assert first.response is None and len(auth._parsed) == 1
    assert _run(auth, _on(first, basic("Иванов", PASSWORD))).response is None  # from the memo
    wrong = _run(auth, _on(first, basic("Иванов", "Wrong12345")))
    assert wrong.response is not None and wrong.response.status_code == 401  # another header: read again
    assert _run(auth, _on(first, basic("Иванов", PASSWORD))).response is None

    accounts = Accounts(SqliteStore(tmp_path / "state" / "gateway.db"), keys.load_or_create_secret(tmp_path / "state"))
    accounts.set_password("Иванов", "NewSecret456")  # another process, as the CLI does it
    changed = _run(auth, _on(first, basic("Иванов", PASSWORD)))
    assert changed.response is not None and changed.response.status_code == 401
    assert _run(auth, _on(first, basic("Иванов", "NewSecret456"))).response is None
    accounts.remove_user("Иванов")
    gone = _run(auth, _on(first, basic("Иванов", "NewSecret456")))
    assert gone.response is not None and gone.response.status_code == 401

    auth.client_disconnected(first.client_conn)
    assert auth._parsed == {}
