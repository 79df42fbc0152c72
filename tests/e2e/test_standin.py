"""The stand-in back end, over real sockets: OData API, echo, bytes, print port, HTTP/1.1 framing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.standin import StandinServer, serve

REPO = Path(__file__).resolve().parents[2]


class ThreadedStandin:
    """The stand-in on its own event loop in a thread, so tests can use blocking clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(serve("127.0.0.1", 0, 0), self.loop)
        self.server: StandinServer = future.result(timeout=10)
        assert self.server.ports.print is not None
        self.data = f"http://127.0.0.1:{self.server.ports.data}"
        self.print = f"http://127.0.0.1:{self.server.ports.print}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def standin() -> Iterator[ThreadedStandin]:
    server = ThreadedStandin()
    yield server
    server.close()


@pytest.fixture
def client(standin: ThreadedStandin) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standin.data, timeout=30) as http:
        yield http


def raw_exchange(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes on one connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        received = b""
        while piece := sock.recv(65536):
            received += piece
        return received


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One Content-Length response from a kept-alive connection: (head, body)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += _receive(sock)
    head, _, body = buffer.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += _receive(sock)
    return head, body


def _receive(sock: socket.socket) -> bytes:
    piece = sock.recv(65536)
    if not piece:
        raise AssertionError("the server closed the connection")
    return piece


# --- OData API -----------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["/api/v1", "/MobileSMARTS/api/v1"])
def test_doc_types_in_odata_shape_with_cyrillic_names(client: httpx.Client, prefix: str) -> None:
    response = client.get(f"{prefix}/DocTypes")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["@odata.context"].endswith(f"{prefix}/$metadata#DocTypes")
    names = {doc_type["name"] for doc_type in document["value"]}
    assert {"Поступление", "Инвентаризация", "Перемещение", "Продажа", "Списание", "Возврат"} <= names
    assert "Поступление".encode() in response.content  # UTF-8, not \u escapes


def test_docs_of_one_type_from_percent_encoded_cyrillic_path(client: httpx.Client) -> None:
    response = client.get("/api/v1/Docs/%D0%9F%D0%BE%D1%81%D1%82%D1%83%D0%BF%D0%BB%D0%B5%D0%BD%D0%B8%D0%B5")
    assert response.status_code == 200
    documents = response.json()["value"]
    assert documents and {doc["documentTypeName"] for doc in documents} == {"Поступление"}
    assert client.get("/MobileSMARTS/api/v1/Docs/Инвентаризация").json()["value"][0]["documentTypeName"] == "Инвентаризация"
    missing = client.get("/api/v1/Docs/Неизвестный")
    assert missing.status_code == 404
    assert "Неизвестный" in missing.json()["error"]["message"]


def test_post_document_returns_201_with_id_and_lists_it(client: httpx.Client) -> None:
    response = client.post("/api/v1/Docs", json={"name": "Заказ 44597", "documentTypeName": "Продажа"})
    assert response.status_code == 201
    created = response.json()
    assert created["id"] and created["name"] == "Заказ 44597"
    listed = client.get("/api/v1/Docs/Продажа").json()["value"]
    assert created["id"] in {doc["id"] for doc in listed}
    assert client.get(f"/api/v1/Docs('{created['id']}')").json()["name"] == "Заказ 44597"
    assert client.delete(f"/api/v1/Docs('{created['id']}')").status_code == 204
    assert client.get(f"/api/v1/Docs('{created['id']}')").status_code == 404


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not UTF-8 JSON"),
    (b"[1, 2]", "JSON object"),
    ('{"documentTypeName": "PickAndShip"}'.encode(), "not a known document type"),
])
def test_post_document_refuses_bad_bodies(client: httpx.Client, body: bytes, fragment: str) -> None:
    response = client.post("/api/v1/Docs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]


def test_products_top_is_deterministic_odata_list(client: httpx.Client) -> None:
    first = client.get("/api/v1/Products", params={"$top": "3"})
    assert first.status_code == 200
    assert first.headers["content-length"] == str(len(first.content))
    document = first.json()
    assert document["@odata.context"].endswith("#Products")
    assert [product["marking"] for product in document["value"]] == ["М-000000", "М-000001", "М-000002"]
    assert client.get("/api/v1/Products?$top=3").content == first.content
    second_page = client.get("/api/v1/Products?$top=2&$skip=1").json()["value"]
    assert second_page == document["value"][1:3]
    one = document["value"][2]
    assert client.get(f"/api/v1/Products('{one['id']}')").json()["name"] == one["name"]


def test_large_product_list_is_streamed_and_complete(client: httpx.Client) -> None:
    response = client.get("/api/v1/Products?$top=20000")
    assert response.status_code == 200
    assert response.headers.get("transfer-encoding") == "chunked"
    assert len(response.content) > 5 * 1024 * 1024
    products = response.json()["value"]
    assert len(products) == 20000
    assert products[-1]["marking"] == "М-019999"


@pytest.mark.parametrize("query", ["$top=abc", "$top=-1", "$top=99999999"])
def test_products_bad_top_is_400(client: httpx.Client, query: str) -> None:
    response = client.get(f"/api/v1/Products?{query}")
    assert response.status_code == 400
    assert "$top" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", [
    "/api/v1/Products/BeginUpdate", "/api/v1/Products/EndUpdate",
    "/MobileSMARTS/api/v1/Tables/Склады/BeginUpdate", "/api/v1/Tables/Склады/EndUpdate",
])
def test_begin_and_end_update(client: httpx.Client, path: str) -> None:
    response = client.post(path, json={})
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    refused = client.get(path)
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"


def test_warehouses_and_tables(client: httpx.Client) -> None:
    warehouses = client.get("/api/v1/Warehouses").json()
    assert warehouses["@odata.context"].endswith("#Warehouses") and warehouses["value"][0]["name"]
    table = client.get("/api/v1/Tables/Контрагенты?$top=5").json()
    assert len(table["value"]) == 5
    assert table["value"][0]["name"].startswith("Контрагенты")


def test_bulk_product_upload_is_hashed(client: httpx.Client) -> None:
    payload = json.dumps([{"id": str(i)} for i in range(1000)]).encode()
    response = client.post("/api/v1/Products", content=payload)
    assert response.json()["sha256"] == hashlib.sha256(payload).hexdigest()


def test_session_returns_token_and_never_logs_the_password(client: httpx.Client) -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger("gateway.standin")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        response = client.get("/api/v1/session", params={"username": "кладовщик", "password": "S3cret-Pw"})
        # The server thread logs the request after it has sent the answer: give it a moment.
        deadline = time.monotonic() + 5
        while not any("/api/v1/session" in line for line in records) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert response.status_code == 200
    assert len(response.json()["token"]) >= 20
    assert any("/api/v1/session" in line for line in records)
    assert not any("S3cret" in line or "password" in line for line in records)
    assert client.get("/api/v1/session?username=x").status_code == 400


@pytest.mark.parametrize("path", ["/", "/nope", "/api/v2/Docs", "/api/v1/Nothing", "/api/v1/DocTypes/x"])
def test_unknown_paths_are_404_json(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"


# --- test endpoints --------------------------------------------------------------------------

def test_echo_of_20_mib_body_has_matching_sha256(standin: ThreadedStandin, client: httpx.Client) -> None:
    body = random.Random(7).randbytes(20 * 1024 * 1024)
    response = client.put("/echo/upload?x=1&y=%D0%B0", content=body, headers={"X-Test": "один".encode()})
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["method"] == "PUT"
    assert echoed["path"] == "/echo/upload"
    assert echoed["query"] == "x=1&y=%D0%B0"
    assert echoed["body_length"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert echoed["headers"]["x-test"] == "один"
    assert echoed["port"] == standin.server.ports.data


def test_echo_joins_repeated_headers(standin: ThreadedStandin) -> None:
    reply = raw_exchange(standin.server.ports.data, (
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n"
        b"Authorization: Basic login:password\r\nConnection: close\r\n\r\n"))
    echoed = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert echoed["headers"]["x-forwarded-for"] == "10.0.0.1, 10.0.0.2"
    assert echoed["headers"]["authorization"] == "Basic login:password"


def test_chunked_request_body(client: httpx.Client) -> None:
    pieces = [random.Random(i).randbytes(100_000 + i) for i in range(30)]
    response = client.post("/echo", content=iter(pieces))
    echoed = response.json()
    assert echoed["headers"]["transfer-encoding"] == "chunked"
    assert echoed["body_length"] == sum(map(len, pieces))
    assert echoed["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_bytes_are_deterministic_and_carry_their_sha256(client: httpx.Client) -> None:
    response = client.get("/bytes", params={"n": str(3 * 1024 * 1024 + 5), "seed": "s1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert len(response.content) == 3 * 1024 * 1024 + 5
    assert response.headers["x-body-sha256"] == hashlib.sha256(response.content).hexdigest()
    assert client.get("/bytes?n=1000&seed=s1").content == response.content[:1000]
    assert client.get("/bytes?n=1000&seed=s2").content != response.content[:1000]
    assert client.get("/bytes?n=x").status_code == 400


def test_gzip_json_is_precompressed(client: httpx.Client) -> None:
    with client.stream("GET", "/gzip-json?n=50") as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert raw[:2] == b"\x1f\x8b"
    assert len(client.get("/gzip-json?n=50").json()["value"]) == 50


def test_slow_waits(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.get("/slow?seconds=0.3")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
    assert client.get("/slow?seconds=-1").status_code == 400
    started = time.monotonic()
    assert client.get("/slow/a-label?seconds=0.3").status_code == 200  # a label, for the logs
    assert time.monotonic() - started >= 0.3
    assert client.get("/slow/a/b?seconds=0.3").status_code == 404


# --- HTTP/1.1 framing ------------------------------------------------------------------------

def test_keep_alive_serves_two_requests_on_one_connection(standin: ThreadedStandin) -> None:
    with socket.create_connection(("127.0.0.1", standin.server.ports.data), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        head1, body1 = read_response(sock)
        sock.sendall(b"GET /echo/second HTTP/1.1\r\nHost: x\r\n\r\n")
        head2, body2 = read_response(sock)
    assert head1.startswith(b"HTTP/1.1 200") and head2.startswith(b"HTTP/1.1 200")
    first, second = json.loads(body1), json.loads(body2)
    assert first["body_length"] == 3 and second["path"] == "/echo/second"
    assert first["peer"] == second["peer"]
    assert b"Connection: close" not in head1


def test_pipelined_requests_and_connection_close(standin: ThreadedStandin) -> None:
    reply = raw_exchange(standin.server.ports.data, (
        b"GET /api/v1/Warehouses HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert reply.rstrip().endswith(b"}")  # the server closed after the second response


def test_head_has_headers_and_no_body(standin: ThreadedStandin) -> None:
    reply = raw_exchange(standin.server.ports.data,
                         b"HEAD /bytes?n=5000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"Content-Length: 5000" in head and b"X-Body-SHA256: " in head
    assert body == b""
    assert httpx.head(f"{standin.data}/api/v1/DocTypes").status_code == 200


def test_404_to_a_post_keeps_the_connection_usable(standin: ThreadedStandin) -> None:
    with socket.create_connection(("127.0.0.1", standin.server.ports.data), timeout=5) as sock:
        sock.sendall(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        head1, _ = read_response(sock)
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        head2, _ = read_response(sock)
    assert head1.startswith(b"HTTP/1.1 404") and head2.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", b"400"),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", b"400"),
    (b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n", b"505"),
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET /echo HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
])
def test_malformed_requests_are_refused_and_closed(standin: ThreadedStandin, request_bytes: bytes, status: bytes) -> None:
    reply = raw_exchange(standin.server.ports.data, request_bytes)
    assert reply.startswith(b"HTTP/1.1 " + status)
    assert b"Connection: close" in reply.partition(b"\r\n\r\n")[0]


def test_broken_chunked_body_closes_the_connection(standin: ThreadedStandin) -> None:
    reply = raw_exchange(standin.server.ports.data,
                         b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n")
    assert reply == b""


# --- print port ------------------------------------------------------------------------------

def test_print_port_accepts_labels_and_reports_status(standin: ThreadedStandin) -> None:
    with httpx.Client(base_url=standin.print, timeout=10) as printer:
        label = "^XA^FDПоступление^FS^XZ".encode()
        job = printer.post("/print", content=label)
        assert job.status_code == 200
        assert job.json()["bytes"] == len(label) and job.json()["job"] >= 1
        status = printer.get("/status").json()
        assert status["status"] == "ready" and status["jobs"] >= 1
        echoed = printer.post("/echo/x", content=b"q").json()
        assert echoed["port"] == standin.server.ports.print != standin.server.ports.data
        assert printer.get("/api/v1/DocTypes").status_code == 404
        assert printer.get("/print").status_code == 405


# --- command line ----------------------------------------------------------------------------

def _start_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway.standin", "--host", "127.0.0.1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", cwd=REPO)


def test_subprocess_prints_ports_and_logs_without_query() -> None:
    process = _start_process("--data-port", "0", "--print-port", "off")
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"standin listening data=(\d+) print=(\d+)", line)
        assert match, line
        assert match.group(2) == "0"
        port = int(match.group(1))
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/session?username=u&password=Hunter22")
        assert response.status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert '"GET /api/v1/session HTTP/1.1" 200' in stderr
    assert "Hunter22" not in stderr


def test_port_in_use_is_a_one_line_error(standin: ThreadedStandin) -> None:
    process = _start_process("--data-port", str(standin.server.ports.data), "--print-port", "off")
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 1
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert f"port {standin.server.ports.data}" in stderr


def test_gateway_standin_command_is_registered() -> None:
    import argparse

    from gateway.commands import standin as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["standin", "--data-port", "0", "--print-port", "off", "--no-access-log"])
    assert (args.data_port, args.print_port, args.access_log, args.host) == (0, None, False, "127.0.0.1")
    with pytest.raises(SystemExit):
        parser.parse_args(["standin", "--data-port", "70000"])
