"""The Policy addon on mitmproxy test flows: metadata from Auth in, allow / 400 / 403 out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from mitmproxy.test import taddons, tflow

from addons._context import set_current_config
from addons.policy import Policy
from gateway.config import ConfigError, GatewayConfig, parse_config

AUTH_PORT, OPEN_PORT = 18001, 18003


def make_config(tmp_path: Path, **auth_base: Any) -> GatewayConfig:
    bases = [
        {"id": "auth", "name": "Склад", "user_auth": True,
         "data": {"listen": AUTH_PORT, "backend": "http://127.0.0.1:9706"}, **auth_base},
        {"id": "open", "name": "Open", "user_auth": False,
         "data": {"listen": OPEN_PORT, "backend": "http://127.0.0.1:9707"}},
    ]
    return parse_config({"bases": bases, "admin": {"enabled": False}}, tmp_path / "gateway.yaml")


@pytest.fixture
def policy(tmp_path: Path) -> Iterator[Policy]:
    cfg = make_config(tmp_path)
    set_current_config(cfg)
    addon = Policy()
    with taddons.context(addon):
        addon.apply_config(cfg)
        yield addon


def flow_for(path: str, method: str = "GET", port: int = AUTH_PORT, **metadata: Any) -> Any:
    flow = tflow.tflow()
    flow.client_conn.sockname = ("127.0.0.1", port)
    flow.request.method = method
    flow.request.path = path
    flow.metadata.update(metadata)
    return flow


MOBILE = {"gateway_user": "Иванов", "gateway_role": "mobile", "gateway_doc_types": ("Поступление",)}
EXTERNAL = {"gateway_user": "1c", "gateway_role": "external", "gateway_doc_types": ("Поступление",)}


def test_mobile_may_use_its_document_type(policy: Policy) -> None:
    flow = flow_for("/api/v1/Docs/%D0%9F%D0%BE%D1%81%D1%82%D1%83%D0%BF%D0%BB%D0%B5%D0%BD%D0%B8%D0%B5?$top=1", **MOBILE)
    policy.requestheaders(flow)
    assert flow.response is None
    assert flow.metadata["gateway_policy_rule"] == "default.yaml rules[1]"


def test_mobile_refused_products_with_reason(policy: Policy) -> None:
    flow = flow_for("/api/v1/Products?password=hunter2", **MOBILE)
    policy.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert flow.response.text == "403 Forbidden: role mobile may not GET /api/v1/Products\n"
    assert flow.metadata["gateway_verdict"] == "denied-policy"
    assert "hunter2" not in flow.metadata["gateway_reason"]


def test_external_may_use_products(policy: Policy) -> None:
    flow = flow_for("/api/v1/Products", "DELETE", **EXTERNAL)
    policy.requestheaders(flow)
    assert flow.response is None


@pytest.mark.parametrize("path", ["/api/v1%2FProducts", "/api/v1/%2e%2e/x", "/a%00", "/a\\b", "/a%FF"])
def test_ambiguous_path_is_400(policy: Policy, path: str) -> None:
    flow = flow_for(path, **EXTERNAL)
    policy.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 400
    assert flow.response.text.startswith("400 Bad Request: ")
    assert flow.metadata["gateway_verdict"] == "denied-policy"


def test_forwarded_path_is_the_normal_form(policy: Policy) -> None:
    flow = flow_for("//api/v1/Docs/Поступление/./lines/../%41bc?x=%2F", **MOBILE)
    policy.requestheaders(flow)
    assert flow.response is None
    assert flow.request.path == "/api/v1/Docs/Поступление/Abc?x=%2F"


def test_dot_segments_cannot_escape_a_document_type(policy: Policy) -> None:
    flow = flow_for("/api/v1/Docs/Поступление/../../Products", **MOBILE)
    policy.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403


@pytest.mark.parametrize("metadata", [
    {},
    {"gateway_role": "mobile"},
    {"gateway_doc_types": ("Поступление",)},
    {"gateway_role": "root", "gateway_doc_types": ()},
    {"gateway_role": "admin", "gateway_doc_types": "Поступление"},
])
def test_missing_identity_fails_closed(policy: Policy, metadata: dict[str, Any]) -> None:
    flow = flow_for("/", **metadata)
    policy.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert flow.metadata["gateway_verdict"] == "denied-policy"


def test_base_without_user_auth_is_not_checked(policy: Policy) -> None:
    flow = flow_for("/api/v1%2FProducts", port=OPEN_PORT)
    policy.requestheaders(flow)
    assert flow.response is None and flow.request.path == "/api/v1%2FProducts"


def test_gateway_own_paths_are_left_to_auth(policy: Policy) -> None:
    flow = flow_for("/.gateway/login", "POST")
    policy.requestheaders(flow)
    assert flow.response is None


def test_answered_flow_is_left_alone(policy: Policy) -> None:
    flow = flow_for("/api/v1/Products", **MOBILE)
    flow.response = tflow.tresp()
    policy.requestheaders(flow)
    assert flow.response.status_code == 200


def test_unknown_port_is_refused(policy: Policy) -> None:
    flow = flow_for("/", port=1, **EXTERNAL)
    policy.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 503


def test_crash_inside_the_decision_denies(policy: Policy) -> None:
    flow = flow_for("/", **EXTERNAL)
    policy.by_base = {"auth": _Exploding()}  # type: ignore[dict-item]
    policy.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 500


class _Exploding:
    source = "x"

    def decide(self, *args: Any) -> Any:
        raise RuntimeError("boom")


def test_base_policy_file_is_used_and_broken_one_refuses_reload(tmp_path: Path) -> None:
    own = tmp_path / "strict.yaml"
    own.write_text("rules:\n  - comment: admins only\n    action: allow\n    roles: [admin]\n    paths: [/**]\n",
                   encoding="utf-8")
    cfg = make_config(tmp_path, policy=str(own))
    set_current_config(cfg)
    addon = Policy()
    addon.apply_config(cfg)
    flow = flow_for("/", **EXTERNAL)
    addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert "no rule allows it" in flow.response.text

    own.write_text("rules:\n  - comment: typo\n    action: allow\n    roles: [admn]\n    paths: [/**]\n",
                   encoding="utf-8")
    before = addon.by_base
    with pytest.raises(ConfigError, match=r"strict.yaml: line 4, rules\[0\].roles: 'admn' is unknown"):
        addon.apply_config(cfg)
    assert addon.by_base is before  # the old policy keeps serving


def test_missing_base_policy_file_refuses(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, policy="nowhere.yaml")
    with pytest.raises(ConfigError, match="nowhere.yaml: file not found"):
        Policy().apply_config(cfg)


def test_remembered_answers_end_with_the_policy_they_came_from(tmp_path: Path) -> None:
    """The same request is decided once per loaded configuration: a changed policy file, applied
    by a reload, decides the next identical request afresh (both ways)."""
    own = tmp_path / "own.yaml"
    allow = "rules:\n  - comment: all\n    action: allow\n    roles: [external]\n    paths: [/**]\n"
    deny_all = "rules:\n  - comment: none\n    action: deny\n    roles: [external]\n    paths: [/**]\n"
    own.write_text(allow, encoding="utf-8")
    cfg = make_config(tmp_path, policy=str(own))
    set_current_config(cfg)
    addon = Policy()
    addon.apply_config(cfg)

    def status() -> int | None:
        flow = flow_for("/api/v1/Products?$top=1", **EXTERNAL)
        addon.requestheaders(flow)
        return flow.response.status_code if flow.response is not None else None

    assert status() is None and status() is None  # the second from the table
    assert len(addon._answers) == 1
    own.write_text(deny_all, encoding="utf-8")
    assert status() is None  # no reload yet: the loaded policy still decides
    addon.apply_config(cfg)
    assert status() == 403 and status() == 403
    own.write_text(allow, encoding="utf-8")
    addon.apply_config(cfg)
    assert status() is None


def test_remembered_answers_are_per_identity_and_never_for_a_missing_one(policy: Policy) -> None:
    path = "/api/v1/Products"
    for metadata, expected in ((EXTERNAL, None), (MOBILE, 403), (EXTERNAL, None), (MOBILE, 403),
                               ({**EXTERNAL, "gateway_role": None}, 403), ({**EXTERNAL, "gateway_doc_types": "x"}, 403),
                               ({**EXTERNAL, "gateway_doc_types": ["Поступление"]}, None)):
        flow = flow_for(path, **metadata)
        policy.requestheaders(flow)
        assert (flow.response.status_code if flow.response is not None else None) == expected, metadata
    assert len(policy._answers) == 2  # the external and the mobile user's; broken identities never
