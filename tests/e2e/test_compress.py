"""Per-base gzip: byte-identical after decompression, buffered and streamed, only when it should."""

from __future__ import annotations

import gzip
import hashlib
import ssl
import zlib

import httpx
import pytest

from addons.compress import GzipStream, accepts_gzip
from tests.harness import RunningGateway, Standin, base_entry, gateway_config

MIB = 1024 * 1024


@pytest.mark.parametrize(("header", "expected"), [
    ("gzip", True), ("gzip, deflate, br", True), ("deflate, gzip;q=0.5", True), ("GZIP", True),
    ("x-gzip", True), ("*", True), ("", False), ("identity", False), ("deflate, br", False),
    ("gzip;q=0", False), ("*;q=0", False), ("br, *;q=0.1", True), ("gzip;q=0, *", False),
])
def test_accept_encoding(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_gzip_stream_round_trip_and_never_an_empty_chunk() -> None:
    stream = GzipStream()
    body = b"".join(bytes([i % 251]) * 1000 for i in range(300))
    out: list[bytes] = []
    for start in range(0, len(body), 7000):
        pieces = stream(body[start:start + 7000])
        assert all(pieces)  # an empty chunk would end an HTTP/1.1 chunked body
        out += pieces
    out += stream(b"")
    assert gzip.decompress(b"".join(out)) == body


@pytest.fixture(scope="module")
def gateway(standin: Standin, tmp_path_factory: pytest.TempPathFactory) -> RunningGateway:
    from tests.harness import start_gateway
    tmp = tmp_path_factory.mktemp("compress")
    bases = [base_entry(standin, "z", "Сжатие", compress=True), base_entry(standin, "p", "Без сжатия")]
    gw = start_gateway(tmp / "gw", gateway_config(tmp, standin, bases=bases, proxy={"stream_threshold": "256k"}))
    yield gw
    gw.stop()


def raw_get(gw: RunningGateway, base: str, path: str, accept: str = "gzip", http2: bool = False) -> tuple[httpx.Response, bytes]:
    verify = ssl.create_default_context(cafile=gw.ca_file)
    with httpx.Client(verify=verify, timeout=30, http2=http2) as http, \
            http.stream("GET", gw.url(base, path=path), headers={"Accept-Encoding": accept}) as answer:
        return answer, b"".join(answer.iter_raw())


def test_small_buffered_response_round_trips(gateway: RunningGateway) -> None:
    answer, raw = raw_get(gateway, "z", "/bytes?n=5000&seed=1")
    assert answer.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in answer.headers["vary"].lower()
    assert int(answer.headers["content-length"]) == len(raw)
    body = gzip.decompress(raw)
    assert len(body) == 5000 and hashlib.sha256(body).hexdigest() == answer.headers["x-body-sha256"]


@pytest.mark.parametrize("http2", [False, True])
def test_large_streamed_product_list_round_trips(gateway: RunningGateway, http2: bool) -> None:
    path = "/api/v1/Products?$top=20000"
    plain, plain_raw = raw_get(gateway, "p", path)
    assert "content-encoding" not in plain.headers and len(plain_raw) > MIB
    answer, raw = raw_get(gateway, "z", path, http2=http2)
    assert answer.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert answer.headers["content-encoding"] == "gzip" and "content-length" not in answer.headers
    assert len(raw) < len(plain_raw) / 3
    assert zlib.decompress(raw, 16 + zlib.MAX_WBITS) == plain_raw


def test_large_body_of_known_length_is_compressed_while_streaming(gateway: RunningGateway) -> None:
    size = 3 * MIB  # above the 256k stream threshold, with a Content-Length from the back end
    answer, raw = raw_get(gateway, "z", f"/bytes?n={size}&seed=5")
    assert answer.headers["content-encoding"] == "gzip" and "content-length" not in answer.headers
    body = gzip.decompress(raw)
    assert len(body) == size and hashlib.sha256(body).hexdigest() == answer.headers["x-body-sha256"]


@pytest.mark.parametrize(("base", "path", "accept"), [
    ("p", "/bytes?n=5000", "gzip"),         # compress: false (the default)
    ("z", "/bytes?n=500", "gzip"),          # below 1 KiB
    ("z", "/bytes?n=5000", "identity"),     # the client cannot unpack
    ("z", "/bytes?n=5000", "br"),
])
def test_not_compressed(gateway: RunningGateway, base: str, path: str, accept: str) -> None:
    answer, raw = raw_get(gateway, base, path, accept)
    assert "content-encoding" not in answer.headers
    assert hashlib.sha256(raw).hexdigest() == answer.headers["x-body-sha256"]


def test_already_compressed_by_the_back_end_is_left_alone(gateway: RunningGateway) -> None:
    answer, raw = raw_get(gateway, "z", "/gzip-json?n=2000")
    assert answer.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw).startswith(b"{")  # compressed once, not twice
