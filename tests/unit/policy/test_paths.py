"""The path normaliser: every accepted form and every refusal, as a table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.paths import _PLAIN_TARGET, AmbiguousPath, normalise_path, normalise_path_in_full

POSTUPLENIE = "%D0%9F%D0%BE%D1%81%D1%82%D1%83%D0%BF%D0%BB%D0%B5%D0%BD%D0%B8%D0%B5"

ACCEPTED = [
    # target, forwarded target, decoded segments
    ("/", "/", ()),
    ("/api/v1/Products", "/api/v1/Products", ("api", "v1", "Products")),
    ("/api/v1/Products?$top=10&$skip=5", "/api/v1/Products?$top=10&$skip=5", ("api", "v1", "Products")),
    ("/api/v1/Docs/", "/api/v1/Docs/", ("api", "v1", "Docs", "")),
    ("//api///v1//Products", "/api/v1/Products", ("api", "v1", "Products")),
    ("/api/./v1/Products", "/api/v1/Products", ("api", "v1", "Products")),
    ("/api/v1/Docs/../Products", "/api/v1/Products", ("api", "v1", "Products")),
    ("/api/v1/Docs/..", "/api/v1/", ("api", "v1", "")),
    ("/api/v1/.", "/api/v1/", ("api", "v1", "")),
    ("/a/b/../../c", "/c", ("c",)),
    ("/%61pi/v1/%50roducts", "/api/v1/Products", ("api", "v1", "Products")),  # unreserved decoded
    ("/a%7eb%2Dc%5f", "/a~b-c_", ("a~b-c_",)),
    ("/a%20b", "/a%20b", ("a b",)),  # reserved / other stay encoded for the back end
    ("/a%3fb", "/a%3Fb", ("a?b",)),  # hex upper-cased
    ("/Docs('42')", "/Docs('42')", ("Docs('42')",)),
    (f"/api/v1/Docs/{POSTUPLENIE}", f"/api/v1/Docs/{POSTUPLENIE}", ("api", "v1", "Docs", "Поступление")),
    ("/api/v1/Docs/Поступление", "/api/v1/Docs/Поступление", ("api", "v1", "Docs", "Поступление")),
    ("/x?password=a/../b", "/x?password=a/../b", ("x",)),  # the query is not a path
    ("/x?", "/x?", ("x",)),
    ("/a..b/c.d", "/a..b/c.d", ("a..b", "c.d")),
]


@pytest.mark.parametrize(("target", "forwarded", "segments"), ACCEPTED)
def test_accepted(target: str, forwarded: str, segments: tuple[str, ...]) -> None:
    normal = normalise_path(target)
    assert normal.target == forwarded
    assert normal.segments == segments


REFUSED = [
    ("/api/v1%2FProducts", "encoded '/'"),
    ("/api/v1%2fProducts", "encoded '/'"),
    ("/api%5Cv1", "encoded '\\'"),
    ("/api\\v1\\Products", "backslash"),
    ("/api/v1;x/Products", "';'"),
    ("/api/v1/%2e%2e/Products", "dot segment"),
    ("/api/v1/.%2E/Products", "dot segment"),
    ("/api/v1/%2e/Products", "dot segment"),
    ("/..", "above the root"),
    ("/a/../../b", "above the root"),
    ("/a%00b", "control character or NUL"),
    ("/a\x00b", "control character or NUL"),
    ("/a%0d%0aX-Injected:%201", "control character"),
    ("/a\tb", "control character"),
    ("/a%7Fb", "control character"),
    ("/a%C2%85b", "control character"),  # U+0085, a C1 control
    ("/a%FFb", "not valid UTF-8"),
    ("/a%D0", "not valid UTF-8"),
    ("/a\udcffb", "not valid UTF-8"),  # how mitmproxy hands over a raw non-UTF-8 byte
    ("/a%2", "two hex digits"),
    ("/a%G1", "two hex digits"),
    ("/a%", "two hex digits"),
    ("/a%252Fb", "double-encoded"),
    ("/api/v1./Products", "ends with a dot"),
    ("/api/v1/Products%20", "ends with a dot or a space"),
    ("/a#frag", "'#'"),
    ("*", "not a path"),
    ("http://evil/x", "not a path"),
    ("", "not a path"),
    ("/x?a=1\x00", "query contains"),
]


@pytest.mark.parametrize(("target", "why"), REFUSED)
def test_refused(target: str, why: str) -> None:
    with pytest.raises(AmbiguousPath) as caught:
        normalise_path(target)
    assert why in caught.value.reason
    assert caught.value.status == 400


def test_refusal_reason_does_not_echo_the_path() -> None:
    with pytest.raises(AmbiguousPath) as caught:
        normalise_path("/secret-thing%2Fx")
    assert "secret-thing" not in caught.value.reason


def test_normal_form_is_stable() -> None:
    for target, _, _ in ACCEPTED:
        once = normalise_path(target)
        assert normalise_path(once.target) == once


# --- the shortcut for plain targets must read every target exactly as the full reading ---

MORE_TARGETS = [
    "/api/v1/DocTypes", "/api/v1/Docs/", "/", "/x?", "/x?a=1&b=2", "/x?a?b", "/x?a b", "/x?a#b", "/x#",
    "/a//b", "//", "/a/", "/A-Z_a~z!$&'()*+,=:@", "/Docs('42')", "/a b", "/a.b", "/a%41", "/a;b",
    "/a\\b", "x/a", "?a", "/?", "/a?\x00", "/a?\x7f", "/a?\u0085", "/a?\udcff", "/a\x7f", "/a\x1f",
    "/Поступление", "/a?Поступление", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p", "/" + "a" * 5000 + "%",
]


def _reading(function: object, target: str) -> object:
    try:
        return function(target)  # type: ignore[operator]
    except AmbiguousPath as e:
        return ("refused", e.reason)


@pytest.mark.parametrize("target", [t for t, _, _ in ACCEPTED] + [t for t, _ in REFUSED] + MORE_TARGETS)
def test_shortcut_agrees_with_the_full_reading(target: str) -> None:
    assert _reading(normalise_path, target) == _reading(normalise_path_in_full, target)


def test_shortcut_is_taken_for_a_plain_target() -> None:
    assert _PLAIN_TARGET.fullmatch("/api/v1/DocTypes?$top=1") is not None
    for target in ("/a//b", "/a/./b", "/a%41", "/a;b", "/a\\b", "/a b", "/a?#", "/Поступление", ""):
        assert _PLAIN_TARGET.fullmatch(target) is None, target


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("/a.%2F5c;\\?#: \x00\x7f\u0085Пé\udcff'(")), max_size=24))
def test_shortcut_agrees_on_any_target(target: str) -> None:
    assert _reading(normalise_path, target) == _reading(normalise_path_in_full, target)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=24).map(lambda t: "/" + t))
def test_shortcut_agrees_on_any_text(target: str) -> None:
    assert _reading(normalise_path, target) == _reading(normalise_path_in_full, target)
