"""The Identity addon: forged X-Gateway-* headers removed, the real identity set, secrets kept back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote

import pytest
from mitmproxy.test import taddons, tflow

from addons._context import set_current_config
from addons.identity import Identity, encode_header_value, strip_session_cookie
from gateway.config import ConfigError, GatewayConfig, parse_config

FORWARD_PORT, DROP_PORT = 18101, 18103


def make_config(tmp_path: Path, **top: Any) -> GatewayConfig:
    bases = [
        {"id": "fwd", "name": "Forward", "user_auth": True,
         "data": {"listen": FORWARD_PORT, "backend": "http://127.0.0.1:9706"}},
        {"id": "drop", "name": "Drop", "user_auth": True, "forward_authorization": False,
         "data": {"listen": DROP_PORT, "backend": "http://127.0.0.1:9707"}},
    ]
    return parse_config({"bases": bases, "admin": {"enabled": False}, **top}, tmp_path / "gateway.yaml")


@pytest.fixture
def identity(tmp_path: Path) -> Iterator[Identity]:
    cfg = make_config(tmp_path)
    set_current_config(cfg)
    addon = Identity()
    with taddons.context(addon):
        addon.apply_config(cfg)
        yield addon


def flow_for(headers: list[tuple[bytes, bytes]], port: int = FORWARD_PORT, **metadata: Any) -> Any:
    flow = tflow.tflow()
    flow.client_conn.sockname = ("127.0.0.1", port)
    flow.request.headers.fields = tuple(headers)
    flow.metadata.update(metadata)
    return flow


FORGED = [(b"X-Gateway-User", b"admin"), (b"x-gateway-role", b"admin"), (b"X-GATEWAY-GROUP", b"Admins"),
          (b"X-Gateway-Anything", b"1"), (b"X-Gateway-Session", b"stolen"), (b"Accept", b"*/*")]


def test_forged_headers_removed_without_a_user(identity: Identity) -> None:
    flow = flow_for(FORGED)
    identity.requestheaders(flow)
    assert [name for name, _ in flow.request.headers.fields] == [b"Accept"]


def test_identity_replaces_forged_values_with_cyrillic_percent_encoded(identity: Identity) -> None:
    flow = flow_for(FORGED, gateway_user="Иванов Пётр", gateway_group="Кладовщики", gateway_role="mobile")
    identity.requestheaders(flow)
    headers = flow.request.headers
    assert headers.get_all("X-Gateway-User") == ["%D0%98%D0%B2%D0%B0%D0%BD%D0%BE%D0%B2%20%D0%9F%D1%91%D1%82%D1%80"]
    assert unquote(headers["X-Gateway-User"]) == "Иванов Пётр"
    assert unquote(headers["X-Gateway-Group"]) == "Кладовщики"
    assert headers["X-Gateway-Role"] == "mobile"
    assert "X-Gateway-Anything" not in headers and "X-Gateway-Session" not in headers
    assert all(value.isascii() for _, value in headers.items())


def test_ascii_names_pass_unchanged_and_percent_is_escaped() -> None:
    assert encode_header_value("ivanov") == "ivanov"
    assert encode_header_value("50% a/b") == "50%25%20a%2Fb"
    assert encode_header_value(["Склад", "b"]) == "%D0%A1%D0%BA%D0%BB%D0%B0%D0%B4,b"


def test_request_hook_strips_what_appeared_after_requestheaders(identity: Identity) -> None:
    flow = flow_for([], gateway_user="u", gateway_role="admin")
    identity.requestheaders(flow)
    flow.request.headers["x-gateway-user"] = "forged-later"
    identity.request(flow)
    assert flow.request.headers.get_all("X-Gateway-User") == ["u"]


def test_authorization_forwarded_by_default(identity: Identity) -> None:
    flow = flow_for([(b"Authorization", b"Basic aTpw")], gateway_user="i")
    identity.requestheaders(flow)
    assert flow.request.headers["Authorization"] == "Basic aTpw"


def test_authorization_dropped_when_the_base_says_so(identity: Identity) -> None:
    flow = flow_for([(b"Authorization", b"Basic aTpw"), (b"authorization", b"Bearer x")], port=DROP_PORT, gateway_user="i")
    identity.requestheaders(flow)
    assert "Authorization" not in flow.request.headers


def test_session_cookie_stripped_other_cookies_kept(identity: Identity) -> None:
    flow = flow_for([(b"Cookie", b"lang=ru; gateway_session=secret-token; ASP.NET_SessionId=abc"),
                     (b"Cookie", b"gateway_session=again")])
    identity.requestheaders(flow)
    assert flow.request.headers.get_all("Cookie") == ["lang=ru; ASP.NET_SessionId=abc"]


def test_strip_session_cookie() -> None:
    assert strip_session_cookie("gateway_session=x") == ""
    assert strip_session_cookie("a=1;gateway_session=x;b=2") == "a=1; b=2"
    assert strip_session_cookie("my_gateway_session=1") == "my_gateway_session=1"


def test_custom_prefix(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, auth={"header_prefix": "X-Auth-"})
    set_current_config(cfg)
    addon = Identity()
    addon.apply_config(cfg)
    flow = flow_for([(b"X-Auth-User", b"forged"), (b"X-Gateway-Session", b"t")], gateway_user="real")
    addon.requestheaders(flow)
    assert flow.request.headers.get_all("X-Auth-User") == ["real"]
    assert "X-Gateway-Session" not in flow.request.headers


@pytest.mark.parametrize("prefix", ["", " ", "X", "X_Gateway_", "Х-Шлюз-"])
def test_bad_prefix_refuses_the_config(tmp_path: Path, prefix: str) -> None:
    cfg = make_config(tmp_path, auth={"header_prefix": prefix})
    with pytest.raises(ConfigError, match="auth.header_prefix"):
        Identity().apply_config(cfg)


def test_unknown_port_is_refused(identity: Identity) -> None:
    flow = flow_for(FORGED, port=1)
    identity.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 503
    assert "X-Gateway-User" not in flow.request.headers


def test_crash_denies(identity: Identity) -> None:
    flow = flow_for([], gateway_user=_Unprintable())
    identity.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 500


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("boom")
