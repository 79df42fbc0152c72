"""Hostile clients against a real gateway process (issue 10): real sockets, memory from /proc,
a legitimate client's latency measured during each attack, the stand-in's echo showing exactly
what reached the back end.

Two gateways per module: ``fast`` has 2-second client timeouts, a small per-address connection
limit and a body limit on one base; ``default`` runs the shipped defaults, for the memory tests.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

import yaml

from gateway.ops.portowner import proc_tcp_rows
from tests.clients import LegitClient
from tests.clients import unverified_tls_context as tls_context
from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config, start_gateway

SHORT = 2.0
PASSWORD = "Sklad2024Mob"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def exchange(port: int, data: bytes, wait: float = 3.0, source: str = "127.0.0.1") -> bytes:
    """Send raw bytes, return all that comes back until the gateway closes (or `wait` passes)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait, source_address=(source, 0))
    try:
        sock.sendall(data)
        out = b""
        while True:
            try:
                piece = sock.recv(65536)
            except socket.timeout:
                return out + b"<still open>"
            except ConnectionResetError:
                return out
            if not piece:
                return out
            out += piece
    finally:
        sock.close()


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def echo_of(answer: bytes) -> dict[str, Any]:
    assert status_of(answer) == 200, answer[:300]
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def backend_saw(standin: Standin, marker: str) -> bool:
    return marker in standin.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def fast(standin: Standin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory = tmp_path_factory.mktemp("hostile-fast")
    config = gateway_config(directory, bases=[
        base_entry(standin, "plain", https=False),
        base_entry(standin, "tls"),
        base_entry(standin, "small", https=False, client_max_body_size="1k"),
        base_entry(standin, "ws", https=False, websocket=True),
    ], admin={"enabled": True, "host": "127.0.0.1", "listen": free_port()},
        limits={"tls_handshake_timeout": SHORT, "client_header_timeout": SHORT, "client_body_timeout": SHORT,
                "keepalive_timeout": SHORT, "send_timeout": SHORT, "max_connections_per_ip": 20})
    gw = start_gateway(directory, config)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def default(standin: Standin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory = tmp_path_factory.mktemp("hostile-default")
    config = gateway_config(directory, bases=[
        base_entry(standin, "plain", https=False),
        base_entry(standin, "tls"),
        base_entry(standin, "auth", user_auth=True),
        base_entry(standin, "authws", user_auth=True, websocket=True),
    ], log={"file": "gateway-file.log"})
    (directory / "gateway.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    cli_ok(directory, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Поступление")
    cli_ok(directory, "user", "add", "ivanov", "--group", "Кладовщики", "--password-stdin", input=PASSWORD + "\n")
    gw = start_gateway(directory, config, wait=False)
    gw.log_path = directory / "gateway-file.log"  # the configured log file, not the process output
    try:
        gw.wait_for_log("gateway ready", 20)
    except AssertionError:
        gw.stop()
        raise
    yield gw
    gw.stop()


# --- 1. limits while reading ----------------------------------------------------------------


def test_endless_headers_are_cut_at_the_limit_and_memory_stays_flat(default: RunningGateway) -> None:
    pid = default.process.pid
    before = rss_mib(pid)
    legit = LegitClient(default.url("plain", path="/echo"))
    legit.start()
    socks = []
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", default.port("plain")), timeout=5)
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        socks.append(sock)
    chunk = b"a" * 65536
    answers = []
    for sock in socks:
        try:
            for _ in range(80):  # up to 5 MB each; the gateway must stop reading long before
                sock.sendall(chunk)
        except OSError:
            pass
        try:
            answers.append(sock.recv(200))
        except OSError:
            answers.append(b"")
        sock.close()
    grown = rss_mib(pid) - before
    assert legit.finish() < 2.0
    assert sum(a.startswith(b"HTTP/1.1 431") for a in answers) >= 8, answers
    assert grown < 30, f"memory grew by {grown:.0f} MiB"


@pytest.mark.parametrize("head, status", [
    (b"GET /echo/{m} HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
    (b"GET /echo/{m} HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(10_000)) + b"\r\n", 431),
    (b"GET /echo/{m}?" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
])
def test_oversized_heads_never_reach_the_back_end(fast: RunningGateway, standin: Standin, head: bytes,
                                                  status: int) -> None:
    marker = uuid.uuid4().hex
    answer = exchange(fast.port("plain"), head.replace(b"{m}", marker.encode()))
    assert status_of(answer) == status
    assert b"Connection: close" in answer
    assert not backend_saw(standin, marker)


# --- 6. normalise or refuse --------------------------------------------------------------------


@pytest.mark.parametrize("head, status", [
    (b"GET /echo/{m} HTTP/1.1\r\nHost: x\r\nX-A: a\rX-Gateway-Role: admin\r\n\r\n", 400),   # bare CR
    (b"GET /echo/{m} HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),                    # obs-fold
    (b"GET /echo/{m} HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),                     # NUL
    (b"POST /echo/{m} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    (b"POST /echo/{m} HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400),
    (b"POST /echo/{m} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET /echo/{m} HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    (b"GET /echo/{m} HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"get /echo/{m} HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"PROPFIND /echo/{m} HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"CONNECT 127.0.0.1:1/{m} HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"GET /echo/{m} HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
     b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", 426),
])
def test_requests_a_lax_parser_could_misread_are_refused(fast: RunningGateway, standin: Standin, head: bytes,
                                                         status: int) -> None:
    marker = uuid.uuid4().hex
    answer = exchange(fast.port("plain"), head.replace(b"{m}", marker.encode()))
    assert status_of(answer) == status, answer[:300]
    time.sleep(0.1)
    assert not backend_saw(standin, marker)


def test_merge_and_patch_pass(fast: RunningGateway) -> None:
    for method in (b"MERGE", b"PATCH"):
        answer = exchange(fast.port("plain"), method + b" /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                          b"Connection: close\r\n\r\n{}")
        assert echo_of(answer)["method"] == method.decode()


def test_absolute_form_goes_on_in_origin_form_with_the_back_ends_host(fast: RunningGateway,
                                                                      standin: Standin) -> None:
    answer = exchange(fast.port("plain"), b"GET http://evil.example/echo HTTP/1.1\r\nHost: evil.example\r\n"
                      b"Connection: close\r\n\r\n")
    echo = echo_of(answer)
    assert echo["path"] == "/echo"
    assert echo["headers"]["host"] == f"127.0.0.1:{standin.data_port}"


def test_chunked_trailers_are_dropped_not_a_crash(fast: RunningGateway) -> None:
    fast.mark_log()
    answer = exchange(fast.port("plain"), b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: 1\r\nX-Gateway-Role: admin\r\n\r\n")
    echo = echo_of(answer)
    assert echo["body_length"] == 5
    assert "x-trailer" not in echo["headers"]
    time.sleep(0.2)
    assert "crashed" not in fast.log()


def test_request_body_limit_of_a_base_is_413(fast: RunningGateway, standin: Standin) -> None:
    marker = uuid.uuid4().hex
    answer = exchange(fast.port("small"), f"POST /echo/{marker} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
                      .encode())
    assert status_of(answer) == 413
    chunked = exchange(fast.port("small"), f"POST /echo/{marker} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                       f"\r\n\r\n".encode() + b"400\r\n" + b"a" * 1024 + b"\r\n400\r\n" + b"a" * 1024 + b"\r\n0\r\n\r\n")
    assert not chunked.startswith(b"HTTP/1.1 200")
    ok = exchange(fast.port("small"), b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close"
                  b"\r\n\r\n0123456789")
    assert echo_of(ok)["body_length"] == 10
    time.sleep(0.1)
    assert not backend_saw(standin, marker)


# --- 8. header hygiene -----------------------------------------------------------------------------


def test_headers_that_change_meaning_never_reach_the_back_end(fast: RunningGateway) -> None:
    claims = ["X-HTTP-Method-Override: DELETE", "X-HTTP-Method: DELETE", "X-Method-Override: DELETE",
              "X-Original-URL: /admin", "X-Rewrite-URL: /admin", "X-Real-IP: 10.9.9.9", "Forwarded: for=10.9.9.9",
              "True-Client-IP: 10.9.9.9", "X-Client-IP: 10.9.9.9", "CF-Connecting-IP: 10.9.9.9",
              "X-Forwarded-Port: 1", "X-Forwarded-Server: evil", "X_Gateway_Role: admin", "x_gateway_user: root"]
    head = "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n" + "".join(
        c + "\r\n" for c in claims) + "\r\n"
    headers = echo_of(exchange(fast.port("plain"), head.encode()))["headers"]
    for claim in claims:
        name = claim.split(":")[0].lower()
        if name in ("x-real-ip", "forwarded"):
            continue
        assert name not in headers, claim
    assert "10.9.9.9" not in json.dumps(headers)
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["forwarded"].startswith("for=127.0.0.1;proto=http")


# --- 7. upgrades --------------------------------------------------------------------------------


def test_websocket_upgrade_only_where_the_base_allows_it(fast: RunningGateway) -> None:
    upgrade = (b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert status_of(exchange(fast.port("plain"), upgrade)) == 426
    assert status_of(exchange(fast.port("ws"), upgrade)) != 426
    h2c = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    assert status_of(exchange(fast.port("ws"), h2c)) == 426


def test_upgrade_on_a_user_auth_base_needs_credentials_first(default: RunningGateway, standin: Standin) -> None:
    context = tls_context()
    marker = uuid.uuid4().hex
    with context.wrap_socket(socket.create_connection(("127.0.0.1", default.port("auth")), timeout=5)) as sock:
        sock.sendall(f"GET /api/v1/{marker} HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
                     .encode())
        assert sock.recv(100)[9:12] in (b"426", b"401")
    assert not backend_saw(standin, marker)


def test_websocket_upgrade_on_a_user_auth_base_passes_auth_and_policy(default: RunningGateway,
                                                                     standin: Standin) -> None:
    import base64

    def upgrade(path: str, credentials: str | None) -> int:
        auth = f"Authorization: Basic {base64.b64encode(credentials.encode()).decode()}\r\n" if credentials else ""
        with tls_context().wrap_socket(socket.create_connection(("127.0.0.1", default.port("authws")),
                                                                timeout=5)) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
                         .encode())
            return int(sock.recv(100)[9:12])

    marker = uuid.uuid4().hex
    assert upgrade(f"/api/v1/Products/{marker}", None) == 401
    assert upgrade(f"/api/v1/Products/{marker}", f"ivanov:{PASSWORD}") == 403  # the policy says no
    assert not backend_saw(standin, marker)


# --- 2. timeouts ---------------------------------------------------------------------------------


def test_each_client_timeout_closes_and_is_counted(fast: RunningGateway) -> None:
    fast.mark_log()
    plain, tls = fast.port("plain"), fast.port("tls")
    idle_tcp = socket.create_connection(("127.0.0.1", plain))
    no_handshake = socket.create_connection(("127.0.0.1", tls))
    tls_no_request = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", tls)))
    half_head = socket.create_connection(("127.0.0.1", plain))
    half_head.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
    keepalive = socket.create_connection(("127.0.0.1", plain))
    keepalive.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    half_body = socket.create_connection(("127.0.0.1", plain))
    half_body.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    slow_reader = socket.socket()
    slow_reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_reader.connect(("127.0.0.1", plain))
    slow_reader.sendall(b"GET /bytes?n=3000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    socks = [idle_tcp, no_handshake, tls_no_request, half_head, keepalive, half_body]
    time.sleep(SHORT + 2.5)
    for sock in socks:
        sock.settimeout(3)
        try:
            while sock.recv(65536):
                pass  # the keep-alive answer, then EOF
        except (ConnectionResetError, ssl.SSLError):
            pass
        sock.close()
    slow_reader.settimeout(3)
    received = 0
    try:
        while piece := slow_reader.recv(65536):
            received += len(piece)
    except ConnectionResetError:
        pass
    slow_reader.close()
    assert received < 3_000_000
    metrics = httpx.get(f"http://127.0.0.1:{fast.config['admin']['listen']}/metrics", timeout=10).text
    for kind in ("tls_handshake", "client_header", "client_body", "keepalive", "send"):
        line = next(l for l in metrics.splitlines() if l.startswith(f'gateway_client_timeouts_total{{kind="{kind}"}}'))
        assert float(line.split()[-1]) >= 1, line
    assert "back end" not in fast.log()[fast._log_offset:], "a client timeout was blamed on the back end"


def test_connections_per_address_are_refused_before_tls(fast: RunningGateway) -> None:
    fast.mark_log()
    held = [socket.create_connection(("127.0.0.1", fast.port("tls")), source_address=("127.0.0.9", 0))
            for _ in range(20)]
    try:
        time.sleep(0.3)
        refused = []
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", fast.port("tls")), source_address=("127.0.0.9", 0))
            sock.settimeout(3)
            try:
                refused.append(sock.recv(10) == b"")
            except ConnectionResetError:
                refused.append(True)
            sock.close()
        assert all(refused)
        other = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", fast.port("tls")),
                                                                   source_address=("127.0.0.10", 0)))
        other.close()
        time.sleep(0.3)
        assert fast.log()[fast._log_offset:].count("refusing connections from 127.0.0.9") == 1
    finally:
        for sock in held:
            sock.close()


# --- 3. bounded memory for slow readers ------------------------------------------------------------


def test_non_reading_clients_hold_little_memory(default: RunningGateway) -> None:
    pid = default.process.pid
    before = rss_mib(pid)
    socks = []
    for _ in range(100):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", default.port("plain")))
        sock.sendall(b"GET /bytes?n=2000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(sock)
    time.sleep(1.5)  # the answers have started and stalled: what is held now stays held
    legit = LegitClient(default.url("plain", path="/echo"))
    legit.start()
    time.sleep(2.5)
    grown = rss_mib(pid) - before
    median = legit.finish(min_samples=5)
    for sock in socks:
        sock.close()
    assert grown <= 64, f"memory grew by {grown:.0f} MiB"
    assert median < 1.5, f"legitimate median latency {median:.2f} s"


def test_non_reading_http2_clients_hold_little_memory(default: RunningGateway) -> None:
    """An HTTP/2 client that never opens its flow-control window: mitmproxy would queue the
    whole answer for it; the back end must be read only as fast as the client takes data."""
    import h2.config
    import h2.connection

    pid = default.process.pid
    before = rss_mib(pid)
    socks = []
    for _ in range(40):
        sock = tls_context(["h2"]).wrap_socket(socket.create_connection(("127.0.0.1", default.port("tls")), timeout=5))
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", "/bytes?n=3000000"), (":scheme", "https"),
                              (":authority", "x")], end_stream=True)
        sock.sendall(conn.data_to_send())
        socks.append(sock)
    time.sleep(3)
    grown = rss_mib(pid) - before
    for sock in socks:
        sock.close()
    assert grown <= 64, f"memory grew by {grown:.0f} MiB for 40 stalled HTTP/2 answers of 3 MB"


# --- 4. HTTP/2 ---------------------------------------------------------------------------------------


def rapid_reset(port: int, pairs: int, path: str = "/slow?seconds=30") -> tuple[int | None, int | None]:
    """HEADERS + RST_STREAM pairs; (GOAWAY error code, server's max concurrent streams)."""
    import h2.config
    import h2.connection
    import h2.events

    sock = tls_context(["h2"]).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    max_streams = None
    try:
        for _ in range(pairs // 50):
            for _ in range(50):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "https"),
                                        (":authority", "x")])
                conn.reset_stream(sid)
            sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    changed = event.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
                    if changed is not None:
                        max_streams = changed.new_value
                if isinstance(event, h2.events.ConnectionTerminated):
                    return event.error_code, max_streams
    except OSError:
        pass
    finally:
        sock.close()
    return None, max_streams


@pytest.mark.parametrize("base", ["tls", "auth"])
def test_rapid_reset_gets_goaway_and_no_504_storm(default: RunningGateway, base: str) -> None:
    import h2.errors

    default.mark_log()
    legit = LegitClient(default.url("plain", path="/echo"))
    legit.start()
    # Its own path, so a back-end timeout an earlier test left behind in the shared log is not taken for one of these.
    label = f"rapid-{uuid.uuid4().hex[:12]}"
    code, max_streams = rapid_reset(default.port(base), 1000, f"/slow/{label}?seconds=30")
    assert code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert max_streams == 100
    assert legit.finish() < 1.5
    if base == "auth":
        time.sleep(6)  # past the harness's 5 s back-end timeout: no request may still be waiting
        assert f"/slow/{label} within" not in default.log()


def test_a_flooding_client_reads_its_goaway_then_is_closed_within_the_linger_time(default: RunningGateway) -> None:
    """The GOAWAY is followed by a FIN, not a TCP reset (which would discard it), and a client
    that neither stops sending nor closes is closed all the same."""
    import h2.config
    import h2.connection
    import h2.events

    from addons._engine_patches import LINGER_SECONDS

    sock = tls_context(["h2"]).wrap_socket(socket.create_connection(("127.0.0.1", default.port("tls")), timeout=10))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    try:
        goaway_at = None
        for _ in range(40):  # far past the limit, sent on after the GOAWAY was written
            for _ in range(50):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, [(":method", "GET"), (":path", "/echo"), (":scheme", "https"),
                                        (":authority", "x")])
                conn.reset_stream(sid)
            sock.sendall(conn.data_to_send())  # a reset here would raise: the gateway still reads
        while goaway_at is None:
            data = sock.recv(65536)
            assert data, "the connection ended without a GOAWAY"
            if any(isinstance(e, h2.events.ConnectionTerminated) for e in conn.receive_data(data)):
                goaway_at = time.monotonic()
        while sock.recv(65536):  # the client keeps its side open: the gateway must close
            pass
        assert time.monotonic() - goaway_at < LINGER_SECONDS + 2
    finally:
        sock.close()


def connections_to(port: int) -> int:
    """Established TCP connections to a local port, from /proc (no ss needed)."""
    return sum(1 for fields in proc_tcp_rows() if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port)


def test_a_cancelled_stream_cancels_its_back_end_request(default: RunningGateway, standin: Standin) -> None:
    import h2.config
    import h2.connection

    baseline = connections_to(standin.data_port)
    sock = tls_context(["h2"]).wrap_socket(socket.create_connection(("127.0.0.1", default.port("tls")), timeout=5))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    for sid in (1, 3, 5):
        conn.send_headers(sid, [(":method", "GET"), (":path", "/slow?seconds=30"), (":scheme", "https"),
                                (":authority", "x")], end_stream=True)
    sock.sendall(conn.data_to_send())
    try:
        deadline = time.monotonic() + 5
        while connections_to(standin.data_port) < baseline + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert connections_to(standin.data_port) >= baseline + 3
        for sid in (1, 3, 5):
            conn.reset_stream(sid)
        sock.sendall(conn.data_to_send())
        deadline = time.monotonic() + 3
        while connections_to(standin.data_port) > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert connections_to(standin.data_port) <= baseline
    finally:
        sock.close()


# --- 5. log storm control ---------------------------------------------------------------------------


def test_identical_warnings_fold_and_security_events_have_their_own_file(default: RunningGateway) -> None:
    for _ in range(40):
        exchange(default.port("plain"), b"GET /echo HTTP/1.2\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    log_file = default.directory / "gateway-file.log"
    security = default.directory / "gateway-file.security.log"
    text = log_file.read_text(encoding="utf-8")
    assert text.count("HTTP version HTTP/1.2 is not supported") <= 10
    assert security.exists() and "HTTP/1.2" in security.read_text(encoding="utf-8")


def test_open_files_limit_is_raised_and_logged(default: RunningGateway) -> None:
    log = (default.directory / "gateway-file.log").read_text(encoding="utf-8")
    assert "open-files limit:" in log
    unit = (Path(__file__).resolve().parents[2] / "deploy" / "gateway.service").read_text()
    assert "LimitNOFILE=65536" in unit


# --- 9. look-alike letters -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/apı/v1/Products", "/api/v1/Productſ", "/api/v1/\u212aeys",
                                  "/api/v1/%C4%B1tems", "/ａpi/v1/Products"])
def test_paths_a_case_mapping_turns_into_latin_letters_are_refused(path: str) -> None:
    from gateway.policy.paths import AmbiguousPath, normalise_path

    with pytest.raises(AmbiguousPath):
        normalise_path(path)


def test_cyrillic_paths_still_pass() -> None:
    from gateway.policy.paths import normalise_path

    assert normalise_path("/api/v1/Документы").segments == ("api", "v1", "Документы")


def test_lookalike_path_on_a_user_auth_base_is_refused(default: RunningGateway, standin: Standin) -> None:
    # A mobile user may not read Products, but "outside the API" is open to every user: a
    # spelling the rules read as outside the API, and a back end upper-cases into it, must fail.
    with httpx.Client(verify=False, timeout=10, auth=("ivanov", PASSWORD)) as client:
        assert client.get(default.url("auth", path="/api/v1/Products")).status_code == 403
        r = client.get(default.url("auth", path="/ap%C4%B1/v1/Product%C5%BF"))
    assert r.status_code == 400
    assert "case mapping" in r.text
    assert not backend_saw(standin, "/apı/") and not backend_saw(standin, "%C4%B1")


def test_large_chunked_request_body_passes_intact(fast: RunningGateway) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB in uneven chunks
    pieces = [body[i:i + 70001] for i in range(0, len(body), 70001)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    answer = exchange(fast.port("plain"), b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n" + chunked, wait=10)
    import hashlib
    echo = echo_of(answer)
    assert echo["body_length"] == len(body) and echo["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_endless_chunk_size_line_ends_the_connection(fast: RunningGateway) -> None:
    sock = socket.create_connection(("127.0.0.1", fast.port("plain")), timeout=5)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    outcome = "open"
    try:
        for _ in range(30):
            sock.sendall(b"0" * 65536)
        outcome = "answered" if sock.recv(100) is not None else "open"
        while sock.recv(65536):
            pass
        outcome = "closed"
    except socket.timeout:
        pass  # still open after 5 s: the gateway kept reading the endless line
    except OSError:
        outcome = "closed"  # reset while we were still sending
    sock.close()
    assert outcome == "closed"


def test_an_idle_flood_cannot_exhaust_file_descriptors(standin: Standin, tmp_path: Path) -> None:
    """With a low open-files limit, 700 idle connections from one address: the gateway refuses
    the excess politely (no EMFILE storm in the log) and another address is still served."""
    gw = start_gateway(tmp_path / "gw", gateway_config(tmp_path, standin, bases=[
        base_entry(standin, "plain", https=False)]), open_files=600)
    socks = []
    try:
        for _ in range(700):
            try:
                socks.append(socket.create_connection(("127.0.0.1", gw.port("plain")), timeout=5,
                                                      source_address=("127.0.0.5", 0)))
            except OSError:
                pass
        time.sleep(1)
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10) as client:
            for _ in range(10):
                assert client.get(gw.url("plain", path="/echo")).status_code == 200
        log = gw.log()
        assert "open-files limit: 600 (hard limit 600)" in log
        assert log.count("Too many open files") <= 5
        assert log.count("refusing connections from 127.0.0.5") == 1
    finally:
        for sock in socks:
            sock.close()
        gw.stop()


def test_an_http2_body_without_content_length_is_framed_for_the_back_end(fast: RunningGateway,
                                                                         standin: Standin) -> None:
    """HTTP/2 needs no Content-Length; unframed on HTTP/1 the body would be read as a second,
    unchecked request on the back end's connection (request smuggling)."""
    import hashlib
    import subprocess

    marker = uuid.uuid4().hex
    smuggled = f"GET /smuggled-{marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    for body in (smuggled, smuggled * 40_000):  # buffered whole, and streamed (above the threshold)
        done = subprocess.run(["curl", "-s", "--http2", "--cacert", fast.ca_file, "-X", "POST", "-T", "-",
                               "-w", "\n%{http_version} %{http_code}", fast.url("tls", path="/echo")],
                              input=body, capture_output=True, timeout=60)
        answer, _, status = done.stdout.rpartition(b"\n")
        assert status == b"2 200", done.stdout[-300:] + done.stderr
        echo = json.loads(answer)
        assert echo["body_length"] == len(body) and echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    time.sleep(0.3)
    assert not backend_saw(standin, f"/smuggled-{marker}")
