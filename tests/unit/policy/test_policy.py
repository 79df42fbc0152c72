"""The default policy as a table per role, pattern syntax, and refused policy files."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError
from gateway.policy.model import fold
from gateway.policy import DEFAULT_POLICY_FILE, PolicyError, load_policy, normalise_path, parse_pattern, parse_policy

DEFAULT = load_policy(DEFAULT_POLICY_FILE)
TYPES = ("Поступление", "Инвентаризация")
POSTUPLENIE = "%D0%9F%D0%BE%D1%81%D1%82%D1%83%D0%BF%D0%BB%D0%B5%D0%BD%D0%B8%D0%B5"


def allowed(role: str, method: str, target: str, doc_types: tuple[str, ...] = TYPES) -> bool:
    return DEFAULT.decide(role, method, normalise_path(target).segments, doc_types).allowed


MOBILE = [
    ("GET", "/api/v1/Docs/Поступление", True),
    ("GET", f"/api/v1/Docs/{POSTUPLENIE}", True),
    ("GET", f"/api/v1/Docs/{POSTUPLENIE}?$expand=declaredItems", True),
    ("get", "/api/v1/Docs/Поступление", True),
    ("POST", "/api/v1/Docs/Поступление", True),
    ("PUT", "/api/v1/Docs/Поступление('42')", True),
    ("PATCH", "/api/v1/Docs/Поступление('42')", True),
    ("GET", "/api/v1/Docs/Поступление('42')/declaredItems", True),
    ("POST", "/api/v1/Docs/Поступление('42')/BeginUpdate", True),
    ("GET", "/api/v1/docs/поступление", True),  # the back end's routes ignore case
    ("GET", "/api/v1/Docs/Инвентаризация/", True),
    ("GET", "/MobileSMARTS/api/v1/Docs/Поступление", True),
    ("PATCH", f"/MobileSMARTS/api/v1/Docs/{POSTUPLENIE}('x')", True),
    ("DELETE", "/api/v1/Docs/Поступление('42')", False),
    ("GET", "/api/v1/Docs/Отгрузка", False),  # not one of its types
    ("GET", "/api/v1/Docs/Отгрузка('42')", False),
    ("GET", "/api/v1/Docs/ПоступлениеX", False),
    ("GET", "/api/v1/Docs/Поступление(", False),
    ("GET", "/api/v1/Docs", False),  # all documents of every type
    ("GET", "/api/v1/Docs('42')", False),  # by id only: type unknown
    ("GET", "/api/v1/Docs(Поступление)", False),
    ("GET", "/api/v1/Docs/Поступление/../../Products", False),
    ("GET", "/api/v1/Products", False),
    ("GET", "/API/V1/PRODUCTS", False),
    ("GET", "/api/v1/DocTypes", False),
    ("GET", "/api/v1/Tables/Склады", False),
    ("GET", "/api/v1/Warehouses", False),
    ("POST", "/api/v1/$batch", False),
    ("GET", "/api/v1/session?username=a&password=b", False),
    ("GET", "/api/v1", False),
    ("GET", "/MobileSMARTS/api/v1/Products", False),
    ("GET", "/", True),  # the terminals' own protocol
    ("POST", "/MobileSMARTS/Terminal/Sync", True),
    ("GET", "/api/v2/Products", True),  # not the REST API this policy knows
]


@pytest.mark.parametrize(("method", "target", "expected"), MOBILE)
def test_mobile(method: str, target: str, expected: bool) -> None:
    assert allowed("mobile", method, target) is expected


def test_mobile_without_document_types_gets_no_documents() -> None:
    assert not allowed("mobile", "GET", "/api/v1/Docs/Поступление", doc_types=())


def test_document_types_compare_in_composed_form() -> None:
    decomposed = "Инвентаризаци" + "и\u0306"  # й typed as и + combining breve
    assert DEFAULT.decide("mobile", "GET", ("api", "v1", "Docs", "Инвентаризаций"), [decomposed]).allowed


REST = [
    ("GET", "/api/v1/Products"),
    ("POST", "/api/v1/Products/BeginUpdate"),
    ("DELETE", "/api/v1/Docs('42')"),
    ("GET", "/api/v1/DocTypes"),
    ("GET", "/api/v1/Docs"),
    ("GET", "/api/v1/Docs/Отгрузка"),
    ("PUT", "/api/v1/Tables/Склады"),
    ("GET", "/api/v1/session?username=a&password=b"),
    ("GET", "/MobileSMARTS/api/v1/Warehouses"),
    ("GET", "/"),
    ("POST", "/MobileSMARTS/Terminal/Sync"),
]


@pytest.mark.parametrize("role", ["external", "admin"])
@pytest.mark.parametrize(("method", "target"), REST)
def test_external_and_admin_use_the_whole_rest_api(role: str, method: str, target: str) -> None:
    assert allowed(role, method, target, doc_types=())


def test_unknown_role_is_denied_everywhere() -> None:
    assert not allowed("guest", "GET", "/")  # "*" in a rule means any of the three roles
    assert not allowed("", "GET", "/")
    assert not allowed("guest", "GET", "/api/v1/Products")


def test_denial_reason_names_role_method_and_path() -> None:
    decision = DEFAULT.decide("mobile", "GET", normalise_path("/api/v1/Products?password=x").segments, TYPES)
    assert decision.reason == "role mobile may not GET /api/v1/Products"
    assert decision.rule is not None and decision.rule.action == "deny"


def test_every_default_rule_has_a_comment() -> None:
    assert all(rule.comment for rule in DEFAULT.rules)


def test_first_match_wins_and_no_match_denies(tmp_path: Path) -> None:
    policy = parse_policy(
        "rules:\n"
        "  - comment: no deleting\n    action: deny\n    methods: [DELETE]\n    paths: [/**]\n"
        "  - comment: readers\n    action: allow\n    roles: [mobile]\n    paths: [/shop/*]\n",
        tmp_path / "p.yaml",
    )
    assert policy.decide("mobile", "GET", ("shop", "x"), ()).allowed
    assert not policy.decide("mobile", "DELETE", ("shop", "x"), ()).allowed
    assert not policy.decide("mobile", "GET", ("shop", "x", "y"), ()).allowed  # * is one segment
    assert not policy.decide("mobile", "GET", ("shop", ""), ()).allowed
    denied = policy.decide("external", "GET", ("shop", "x"), ())
    assert not denied.allowed and "no rule allows it" in denied.reason


def test_root_pattern_matches_only_the_root() -> None:
    pattern = parse_pattern("/")
    assert pattern.matches((), frozenset())
    assert not pattern.matches(("a",), frozenset())


GOOD_RULE = "  - comment: c\n    action: allow\n    roles: [mobile]\n    methods: [GET]\n    paths: [/a]\n"

BROKEN = [
    # file text, line expected, words expected in the message
    ("rules: [\n", 2, "not valid YAML"),
    ("- a\n- b\n", 1, "must be a mapping with a `rules:` list"),
    ("version: 1\n", 1, "rules: is missing"),
    ("rules: []\n", 1, "non-empty list"),
    ("rulez:\n" + GOOD_RULE, 1, "rulez: is not a policy key"),
    ("version: 2\nrules:\n" + GOOD_RULE, 1, "version"),
    ("rules:\n" + GOOD_RULE + "  - action: allow\n    paths: [/b]\n", 7, "rules[1].comment: is missing"),
    ("rules:\n" + GOOD_RULE + "  - comment: c\n    paths: [/b]\n", 7, "rules[1].action: is missing"),
    ("rules:\n  - comment: c\n    action: permit\n    paths: [/b]\n", 3, "'permit' is not an action"),
    ("rules:\n  - comment: c\n    action: allow\n    roles: [mobil]\n    paths: [/b]\n", 4,
     "'mobil' is unknown; use admin, external, mobile"),
    ("rules:\n  - comment: c\n    action: allow\n    methods: [GTE]\n    paths: [/b]\n", 4, "'GTE' is unknown"),
    ("rules:\n  - comment: c\n    action: allow\n    methods: []\n    paths: [/b]\n", 4, "non-empty list"),
    ("rules:\n  - comment: c\n    action: allow\n\n    paths: [b]\n", 5, "must start with '/'"),
    ("rules:\n  - comment: c\n    action: allow\n    paths: [/a/**/b]\n", 4, "'**' may only be the last"),
    ("rules:\n  - comment: c\n    action: allow\n    paths: ['/Docs/{doctype}']\n", 4, "unknown variable {doctype}"),
    ("rules:\n  - comment: c\n    action: allow\n    paths: ['/Docs/x{doc_type}']\n", 4, "whole segment"),
    ("rules:\n  - comment: c\n    action: allow\n    paths: ['/Docs/%D0%9F']\n", 4, "decoded"),
    ("rules:\n  - comment: c\n    action: allow\n    paths: ['/api/']\n", 4, "use /**"),
    ("rules:\n  - comment: c\n    action: allow\n    paths: []\n", 4, "non-empty list of patterns"),
    ("rules:\n  - comment: c\n    action: allow\n    paths: [/a]\n    role: [admin]\n", 5,
     "role: is not a rule key"),
    ("rules:\n  - comment: ''\n    action: allow\n    paths: [/a]\n", 2, "comment: must be a sentence"),
    ("rules:\n  - just text\n", 2, "rules[0]: is not a mapping"),
]


@pytest.mark.parametrize(("text", "line", "words"), BROKEN)
def test_broken_policy_names_file_line_and_fix(tmp_path: Path, text: str, line: int | None, words: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert str(path) in message
    assert words in message
    assert caught.value.line == line
    if line is not None:
        assert f"line {line}" in message
    assert isinstance(caught.value, ConfigError)  # the CLI and the runner report it like any config error


def test_missing_policy_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="file not found; fix the base's `policy:` path"):
        load_policy(tmp_path / "nope.yaml")


def test_policy_file_with_bom_and_cyrillic_literal(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("rules:\n  - comment: склад\n    action: allow\n    paths: ['/Склад/**']\n", encoding="utf-8-sig")
    policy = load_policy(path)
    assert policy.decide("mobile", "GET", normalise_path("/%D1%81%D0%BA%D0%BB%D0%B0%D0%B4/x").segments, ()).allowed


def test_not_utf8_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes("rules:\n  - comment: склад\n".encode("cp1251"))
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(path)


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=12) | st.text(alphabet=st.characters(max_codepoint=127), max_size=12))
def test_fold_shortcut_for_ascii_agrees_with_nfc_casefold(text: str) -> None:
    assert fold(text) == unicodedata.normalize("NFC", text).casefold()


def test_document_types_given_as_a_list_or_a_tuple_decide_alike() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)
    for target in ("/api/v1/Docs/Поступление", "/api/v1/Docs/Other"):
        segments = normalise_path(target).segments
        as_list = policy.decide("mobile", "GET", segments, ["поступление"])
        as_tuple = policy.decide("mobile", "GET", segments, ("поступление",))
        assert as_list.allowed == as_tuple.allowed and as_list.rule == as_tuple.rule


def test_remembered_decisions_equal_fresh_ones() -> None:
    targets = [t for _, t, _ in MOBILE] + ["/api/v1/Products", "/", "/API/V1/products"]
    for role in ("mobile", "external", "admin", "nobody"):
        for target in targets:
            segments = normalise_path(target).segments
            fresh = load_policy(DEFAULT_POLICY_FILE)
            first = DEFAULT.decide(role, "GET", segments, TYPES)
            again = DEFAULT.decide(role, "get", segments, list(TYPES))
            assert first == again == fresh.decide(role, "GET", segments, TYPES)
            other_types = DEFAULT.decide(role, "GET", segments, ())
            assert other_types == fresh.decide(role, "GET", segments, ())


def test_remembered_decisions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.policy import model
    monkeypatch.setattr(model, "DECISIONS_REMEMBERED", 10)
    policy = load_policy(DEFAULT_POLICY_FILE)
    for n in range(50):
        policy.decide("external", "GET", ("api", "v1", f"P{n}"), ())
    assert len(policy._decisions) <= 10
