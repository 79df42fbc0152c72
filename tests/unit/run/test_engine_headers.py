"""gateway.run.engine_headers answers every header lookup as mitmproxy's own Headers does."""

import random

import pytest
from mitmproxy import http

from gateway.run import engine_headers

NAMES = [b"Host", b"host", b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"Transfer-Encoding",
         b"Authorization", b"X-Gateway-User", b"Cookie", b"\xc3\xa9t\xc3\xa9", b"X-\xff", b"", b"Connection"]
KEYS = ["host", "HOST", "Content-Length", "transfer-encoding", "authorization", "x-gateway-user", "cookie",
        "été", "ÉTÉ", "x-\udcff", "", "connection", "absent", b"HOST", b"content-length", b"\xc3\xa9t\xc3\xa9",
        b"x-\xff", b"X-\xff", b"absent"]
VALUES = [b"", b"1", b"a, b", b"\xc3\xa9", b"\xff\xfe", b"close"]


def _answers(headers: http.Headers, key: object) -> tuple[object, ...]:
    def attempt(call):  # type: ignore[no-untyped-def]
        try:
            return ("ok", call())
        except Exception as e:  # the same exception type is part of the answer
            return ("raised", type(e))
    return (attempt(lambda: headers.get_all(key)), attempt(lambda: headers[key]),
            attempt(lambda: headers.get(key)), attempt(lambda: headers.get(key, "dflt")),
            attempt(lambda: key in headers))


@pytest.fixture
def lean_headers():  # type: ignore[no-untyped-def]
    engine_headers.install()
    yield
    engine_headers.uninstall()


def test_same_answers_as_mitmproxy_on_random_header_sets(lean_headers) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(22)
    cases = []
    for _ in range(1500):
        fields = tuple((rng.choice(NAMES), rng.choice(VALUES)) for _ in range(rng.randint(0, 9)))
        cases.append((fields, [rng.choice(KEYS + [5, None, 1.5]) for _ in range(4)]))
    lean = [[_answers(http.Headers(fields), key) for key in keys] for fields, keys in cases]
    engine_headers.uninstall()
    try:
        original = [[_answers(http.Headers(fields), key) for key in keys] for fields, keys in cases]
    finally:
        engine_headers.install()
    assert lean == original


def test_installed_and_removed(lean_headers) -> None:  # type: ignore[no-untyped-def]
    assert http.Headers.get is engine_headers.get
    headers = http.Headers([(b"Content-Length", b"5"), (b"content-length", b"6")])
    assert headers.get("CONTENT-LENGTH") == "5, 6" and "content-length" in headers and "x" not in headers
    engine_headers.uninstall()
    assert "get" not in vars(http.Headers) and headers["content-length"] == "5, 6"
