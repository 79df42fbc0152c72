"""The Identity addon: forged X-Gateway-* headers removed, the real identity set, secrets kept back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


# --- the request hook's quick check: it must end with the same headers as a full rewrite ---

def _reference_rewrite(headers: Any, prefix: str, forward_authorization: bool, metadata: dict[str, Any]) -> None:
    """The full rewrite as first written (before the quick check existed): the specification."""
    for name in {n for n in headers.keys() if n.lower().startswith((prefix.lower(), "x-gateway-session"))}:
        del headers[name]
    cookies = [strip_session_cookie(v) for v in headers.get_all("cookie")]
    if any("gateway_session" in v for v in headers.get_all("cookie")):
        headers.set_all("cookie", [c for c in cookies if c])
    if not forward_authorization:
        headers.pop("authorization", None)
    user = metadata.get("gateway_user")
    if user:
        headers[prefix + "User"] = encode_header_value(user)
        for key, suffix in (("gateway_group", "Group"), ("gateway_role", "Role")):
            value = metadata.get(key)
            if value:
                headers[prefix + suffix] = encode_header_value(value)


def _both_hooks(identity: Identity, headers: list[tuple[bytes, bytes]], added: list[tuple[bytes, bytes]],
                port: int, metadata: dict[str, Any], later: dict[str, Any]) -> tuple[Any, Any]:
    """(headers after Identity's two hooks, headers after two full reference rewrites), with
    ``added`` header fields and ``later`` metadata changes made between the hooks."""
    flow = flow_for(headers, port=port, **metadata)
    identity.requestheaders(flow)
    flow.request.headers.fields += tuple(added)
    flow.metadata.update(later)
    identity.request(flow)

    expected = flow_for(headers, port=port, **metadata)
    forward = port == FORWARD_PORT
    _reference_rewrite(expected.request.headers, identity.prefix, forward, expected.metadata)
    expected.request.headers.fields += tuple(added)
    expected.metadata.update(later)
    _reference_rewrite(expected.request.headers, identity.prefix, forward, expected.metadata)
    return _by_name(flow.request.headers.fields), _by_name(expected.request.headers.fields)


def _by_name(fields: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    """Fields in a form where only what HTTP gives meaning to counts (RFC 9110 §5.3): the order
    of fields with different names does not, the order of fields with the same name does."""
    return sorted(fields, key=lambda field: field[0].lower())


@pytest.mark.parametrize("added, later", [
    ([], {}),
    ([(b"X-Gateway-User", b"forged")], {}),
    ([(b"x-gateway-role", b"admin")], {}),
    ([(b"X-Gateway-Session", b"stolen")], {}),
    ([(b"Cookie", b"gateway_session=stolen; lang=ru")], {}),
    ([(b"Authorization", b"Basic aTpw")], {}),
    ([(b"X-Gateway-\xd0\x98", b"1")], {}),
    ([], {"gateway_user": "другой"}),
    ([], {"gateway_role": "admin"}),
    ([], {"gateway_group": None}),
])
@pytest.mark.parametrize("port", [FORWARD_PORT, DROP_PORT])
def test_request_hook_ends_like_a_full_rewrite(identity: Identity, added: list[tuple[bytes, bytes]],
                                                 later: dict[str, Any], port: int) -> None:
    got, expected = _both_hooks(identity, FORGED + [(b"Cookie", b"a=1")], added, port,
                                {"gateway_user": "Иванов", "gateway_group": "Склад", "gateway_role": "mobile"},
                                later)
    assert got == expected


def test_request_hook_sees_a_changed_identity_value(identity: Identity) -> None:
    flow = flow_for([], gateway_user="u", gateway_role="mobile")
    identity.requestheaders(flow)
    flow.request.headers["X-Gateway-Role"] = "admin"  # same name, other value
    identity.request(flow)
    assert flow.request.headers.get_all("X-Gateway-Role") == ["mobile"]


def test_request_hook_sees_a_group_list_changed_in_place(identity: Identity) -> None:
    groups = ["a"]
    flow = flow_for([], gateway_user="u", gateway_group=groups)
    identity.requestheaders(flow)
    groups.append("b")
    identity.request(flow)
    assert flow.request.headers["X-Gateway-Group"] == "a,b"


def test_request_hook_leaves_an_unchanged_request_alone(identity: Identity) -> None:
    flow = flow_for([(b"Accept", b"*/*")], gateway_user="u", gateway_role="mobile")
    identity.requestheaders(flow)
    before = flow.request.headers.fields
    identity.request(flow)
    assert flow.request.headers.fields is before


def test_request_hook_without_requestheaders_rewrites_in_full(identity: Identity) -> None:
    flow = flow_for(FORGED, gateway_user="u")
    identity.request(flow)
    assert flow.request.headers.get_all("X-Gateway-User") == ["u"]
    assert "X-Gateway-Session" not in flow.request.headers


_NAMES = st.sampled_from([b"X-Gateway-User", b"x-gateway-user", b"X-GATEWAY-ROLE", b"X-Gateway-Group",
                          b"X-Gateway-Session", b"x-gateway-x", b"Cookie", b"cookie", b"Authorization",
                          b"Accept", b"X-Gatewa", b"X-Other", b"X-Gateway-\xd0\x98"])
_VALUES = st.sampled_from([b"1", b"admin", b"gateway_session=t", b"a=1; gateway_session=t; b=2", b"a=1",
                           b"%D0%98", b"mobile", b"u"])
_FIELDS = st.lists(st.tuples(_NAMES, _VALUES), max_size=6)
_IDENTITY = st.fixed_dictionaries({"gateway_user": st.sampled_from(["", "u", "Иванов"]),
                                   "gateway_group": st.sampled_from([None, "g", ["a", "b"]]),
                                   "gateway_role": st.sampled_from([None, "mobile", "admin"])})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=_FIELDS, added=_FIELDS, metadata=_IDENTITY, later=_IDENTITY | st.just({}),
       port=st.sampled_from([FORWARD_PORT, DROP_PORT]))
def test_request_hook_agrees_with_full_rewrite(identity: Identity, headers: list[tuple[bytes, bytes]],
                                               added: list[tuple[bytes, bytes]], metadata: dict[str, Any],
                                               later: dict[str, Any], port: int) -> None:
    got, expected = _both_hooks(identity, headers, added, port, metadata, later)
    assert got == expected


def test_remembered_fields_follow_the_identity_and_the_prefix() -> None:
    """The header fields are made once per identity; another user, group, role or device, and a
    new prefix, get their own — never another identity's."""
    from addons.identity import Identity

    addon = Identity()
    seen = {}
    for user, group, role, device in [("u1", "g1", "mobile", None), ("u1", "g2", "mobile", None),
                                      ("u2", "g1", "mobile", None), ("u1", "g1", "admin", None),
                                      ("u1", "g1", "mobile", "tsd-7"), ("", None, None, "tsd-7"),
                                      ("Иванов", "Склад", "mobile", None), ("u1", "g1", "mobile", None)]:
        fields, added = addon._fields_for((user, group, role, device))
        expected = tuple((name.encode(), encode_header_value(value).encode())
                         for (key, _lower, name), value in zip(addon._names, (user, group, role, device))
                         if value and (user or key == "gateway_device"))
        assert fields == expected
        assert added == tuple((name.lower(), value) for name, value in fields)
        seen[(user, group, role, device)] = fields
    assert seen[("u1", "g1", "mobile", None)][0] == (b"X-Gateway-User", b"u1")
    addon._set_prefix("X-Corp-")
    assert addon._fields_for(("u1", "g1", "mobile", None))[0][0] == (b"X-Corp-User", b"u1")
