"""The foundation, end to end: real gateway and stand-in processes, real TLS, real HTTP clients."""

from __future__ import annotations

import copy
import hashlib
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.harness import RunningGateway, Standin, base_entry, free_port, gateway_config, run_gateway_command

Factory = Callable[..., RunningGateway]
MIB = 1024 * 1024


@pytest.fixture
def gateway(standin: Standin, gateway_factory: Factory, tmp_path: Path) -> RunningGateway:
    return gateway_factory(gateway_config(tmp_path, standin))


def client(gw: RunningGateway, **kwargs: Any) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=gw.ca_file), timeout=30, **kwargs)


def test_https_request_reaches_the_back_end_with_forwarded_headers(gateway: RunningGateway) -> None:
    with client(gateway) as http:
        answer = http.get(gateway.url("b1", path="/echo/ping?x=1"), headers={"X-Forwarded-For": "6.6.6.6"})
    assert answer.status_code == 200
    echo = answer.json()
    assert echo["method"] == "GET"
    assert echo["path"].startswith("/echo/ping")
    headers = {k.lower(): v for k, v in echo["headers"].items()}
    # A client-supplied X-Forwarded-For is replaced, never trusted.
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{gateway.port('b1')}"


def test_odata_api_through_the_gateway(gateway: RunningGateway) -> None:
    with client(gateway) as http:
        doc_types = http.get(gateway.url("b1", path="/api/v1/DocTypes"))
        mobile = http.get(gateway.url("b1", path="/MobileSMARTS/api/v1/DocTypes"))
        print_port = http.get(gateway.url("b1", role="print", path="/status"))
    assert doc_types.status_code == 200 and "value" in doc_types.json()
    assert mobile.json()["value"] == doc_types.json()["value"]
    assert print_port.status_code == 200


def test_20_mib_bodies_round_trip_byte_identical_both_ways(gateway: RunningGateway) -> None:
    body = os.urandom(20 * MIB)
    with client(gateway) as http:
        upload = http.post(gateway.url("b1", path="/echo/upload"), content=body)
        assert upload.status_code == 200
        assert upload.json()["body_length"] == len(body)
        assert upload.json()["body_sha256"] == hashlib.sha256(body).hexdigest()

        download = http.get(gateway.url("b1", path=f"/bytes?n={20 * MIB}&seed=7"))
        assert download.status_code == 200
        assert len(download.content) == 20 * MIB
        assert hashlib.sha256(download.content).hexdigest() == download.headers["X-Body-SHA256"]


def test_large_bodies_are_streamed_not_buffered(standin: Standin, gateway_factory: Factory, tmp_path: Path) -> None:
    """With a tiny threshold, a 60 MiB download must not grow the gateway's memory by its size."""
    import psutil
    gw = gateway_factory(gateway_config(tmp_path, standin, proxy={"stream_threshold": "64k", "backend_timeout": 30}))
    process = psutil.Process(gw.process.pid)
    before = process.memory_info().rss
    size = 60 * MIB
    digest = hashlib.sha256()
    with client(gw) as http, http.stream("GET", gw.url("b1", path=f"/bytes?n={size}&seed=3")) as answer:
        expected = answer.headers["X-Body-SHA256"]
        peak = before
        for chunk in answer.iter_bytes():
            digest.update(chunk)
            peak = max(peak, process.memory_info().rss)
    assert digest.hexdigest() == expected
    assert peak - before < size / 2


def test_plaintext_on_https_port_gets_400_and_never_reaches_back_end(gateway: RunningGateway, standin: Standin) -> None:
    marker = f"/echo/plaintext-{time.monotonic_ns()}"
    with socket.create_connection(("127.0.0.1", gateway.port("b1")), timeout=10) as sock:
        sock.sendall(f"GET {marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = _read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"HTTPS" in body and body.count(b"\n") == 1
    assert marker.encode() not in standin.log_path.read_bytes()
    # The same marker over TLS does reach it, so the check above can fail.
    with client(gateway) as http:
        assert http.get(gateway.url("b1", path=marker)).status_code == 200
    assert _eventually(lambda: marker.encode() in standin.log_path.read_bytes())


def test_plain_http_base_is_served_and_warned_about(standin: Standin, gateway_factory: Factory, tmp_path: Path) -> None:
    gw = gateway_factory(gateway_config(tmp_path, bases=[base_entry(standin, "open", "Открытая база", https=False)]))
    answer = httpx.get(gw.url("open", path="/echo/x"), timeout=10)
    assert answer.status_code == 200
    assert answer.json()["headers"].get("X-Forwarded-Proto", answer.json()["headers"].get("x-forwarded-proto")) == "http"
    assert "Открытая база" in gw.log() and "clear text" in gw.log()


def test_dead_back_end_gets_502_naming_the_base_without_leaking(standin: Standin, gateway_factory: Factory,
                                                                tmp_path: Path) -> None:
    dead_port = free_port()
    dead = base_entry(standin, "dead", "Склад без сервера")
    dead["data"]["backend"] = f"http://127.0.0.1:{dead_port}"
    alive = base_entry(standin, "alive", "Живой склад")
    gw = gateway_factory(gateway_config(tmp_path, bases=[dead, alive]))
    with client(gw) as http:
        answer = http.get(gw.url("dead", path="/api/v1/Docs"))
        still = http.get(gw.url("alive", path="/api/v1/DocTypes"))
    assert answer.status_code == 502
    assert "Склад без сервера" in answer.text
    assert str(dead_port) not in answer.text and "127.0.0.1" not in answer.text
    assert "mitmproxy" not in answer.text.lower() and "mitmproxy" not in answer.headers.get("server", "").lower()
    assert "Traceback" not in answer.text
    assert still.status_code == 200
    assert str(dead_port) in gw.wait_for_log(rf"back end http://127.0.0.1:{dead_port}.*")


def test_slow_back_end_gets_504(standin: Standin, gateway_factory: Factory, tmp_path: Path) -> None:
    gw = gateway_factory(gateway_config(tmp_path, standin, proxy={"backend_timeout": 1}))
    started = time.monotonic()
    with client(gw) as http:
        answer = http.get(gw.url("b1", path="/slow?seconds=8"))
    assert answer.status_code == 504
    assert time.monotonic() - started < 6
    assert "Магазин 15 Вещевой, Расширенный" in answer.text


def test_config_error_names_key_path_and_exits_nonzero(standin: Standin, tmp_path: Path, gateway_factory: Factory) -> None:
    config = gateway_config(tmp_path, standin)
    config["bases"][0]["print"]["listen"] = "not-a-port"
    gw = gateway_factory(config, wait=False)
    assert gw.process.wait(20) != 0
    assert "bases[0].print.listen" in gw.log()
    assert "Traceback" not in gw.log()


def test_port_clash_between_bases_names_both(standin: Standin, tmp_path: Path, gateway_factory: Factory) -> None:
    first = base_entry(standin, "one", "Первая база")
    second = base_entry(standin, "two", "Вторая база")
    second["data"]["listen"] = first["print"]["listen"]
    gw = gateway_factory(gateway_config(tmp_path, bases=[first, second]), wait=False)
    assert gw.process.wait(20) != 0
    log = gw.log()
    assert "Первая база" in log and "Вторая база" in log and str(first["print"]["listen"]) in log


def test_port_taken_by_another_program_is_a_clear_startup_error(standin: Standin, tmp_path: Path,
                                                               gateway_factory: Factory) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    try:
        entry = base_entry(standin, "b1", "Склад 7")
        entry["data"]["listen"] = squatter.getsockname()[1]
        gw = gateway_factory(gateway_config(tmp_path, bases=[entry]), wait=False)
        assert gw.process.wait(20) != 0
        log = gw.log()
        assert "Склад 7" in log and f"port {squatter.getsockname()[1]} is taken by another program" in log
        assert "Traceback" not in log
    finally:
        squatter.close()


def test_reload_adds_a_base_and_moves_a_port_without_dropping_open_connections(
        standin: Standin, gateway_factory: Factory, tmp_path: Path) -> None:
    keep = base_entry(standin, "keep", "Неизменная база")
    moving = base_entry(standin, "moving", "Переезжающая база")
    config = gateway_config(tmp_path, bases=[keep, moving])
    gw = gateway_factory(config)
    old_port = moving["data"]["listen"]
    with client(gw) as held:  # one keep-alive connection to the unchanged base, held across the reload
        first = held.get(gw.url("keep", path="/echo/before"))
        assert first.status_code == 200

        new_config = copy.deepcopy(config)
        new_config["bases"][1]["data"]["listen"] = free_port()
        new_config["bases"].append(base_entry(standin, "added", "Новая база"))
        gw.reload(new_config)

        again = held.get(gw.url("keep", path="/echo/after"))
        assert again.status_code == 200
        assert first.extensions["network_stream"].get_extra_info("client_addr") == \
            again.extensions["network_stream"].get_extra_info("client_addr"), "the held connection was replaced"

        assert held.get(gw.url("added", path="/echo/new")).status_code == 200
        assert held.get(gw.url("moving", path="/echo/moved")).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://127.0.0.1:{old_port}/", verify=False, timeout=5)


def test_invalid_new_config_is_refused_and_old_keeps_serving(gateway: RunningGateway) -> None:
    running = gateway.config
    broken = copy.deepcopy(running)
    broken["bases"][0]["data"]["listen"] = 99999
    gateway.mark_log()
    gateway.write_config(broken)
    line = gateway.wait_for_log(r"configuration reload refused.*")
    assert "bases[0].data.listen" in line
    gateway.config = running  # the ports the gateway still serves
    with client(gateway) as http:
        assert http.get(gateway.url("b1", path="/echo/still")).status_code == 200


def test_sighup_reloads(gateway: RunningGateway, standin: Standin) -> None:
    import signal

    if not hasattr(signal, "SIGHUP"):
        pytest.skip("no SIGHUP on this platform")
    gateway.mark_log()
    gateway.process.send_signal(signal.SIGHUP)
    gateway.wait_for_log(r"configuration reloaded \(SIGHUP\)")


def test_cli_help_and_module_entry_point(tmp_path: Path) -> None:
    result = run_gateway_command(tmp_path, "--help")
    assert result.returncode == 0 and "run" in result.stdout


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_back_end_that_never_accepts_gets_504(standin: Standin, gateway_factory: Factory, tmp_path: Path) -> None:
    """A back end whose accept queue is full: SYNs are dropped and connect() hangs."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue so further connects hang
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(blackhole.getsockname())
            fillers.append(filler)
        time.sleep(0.2)
        entry = base_entry(standin, "hole", "Зависший склад")
        entry["data"]["backend"] = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        gw = gateway_factory(gateway_config(tmp_path, bases=[entry], proxy={"connect_timeout": 1, "backend_timeout": 30}))
        started = time.monotonic()
        with client(gw) as http:
            answer = http.get(gw.url("hole", path="/api/v1/Docs"))
        assert answer.status_code == 504
        assert "Зависший склад" in answer.text
        assert time.monotonic() - started < 10
    finally:
        for filler in fillers:
            filler.close()
        blackhole.close()


def test_config_option_works_after_the_sub_command(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.yaml").write_text("bases: [{id: x, name: X, data: {listen: 70000, backend: 'http://127.0.0.1:1'}}]\n",
                                             encoding="utf-8")
    for args in (["check", "-c", "elsewhere.yaml"], ["-c", "elsewhere.yaml", "check"]):
        result = subprocess_run_gateway(tmp_path, args)
        assert result.returncode != 0
        assert "elsewhere.yaml" in result.stderr + result.stdout
        assert "bases[0].data.listen" in result.stderr + result.stdout


def subprocess_run_gateway(directory: Path, args: list[str]) -> Any:
    import subprocess
    import sys

    from tests.harness import _env

    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          encoding="utf-8", env=_env(), cwd=directory, timeout=60)


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_error_answers_are_plain_text_over_http1_and_http2(standin: Standin, gateway_factory: Factory,
                                                           tmp_path: Path, http2: bool) -> None:
    dead = base_entry(standin, "dead", "Склад без сервера")
    dead["data"]["backend"] = f"http://127.0.0.1:{free_port()}"
    slow = base_entry(standin, "slow", "Медленный склад")
    gw = gateway_factory(gateway_config(tmp_path, bases=[dead, slow], proxy={"backend_timeout": 1}))
    with client(gw, http2=http2, http1=not http2) as http:
        down = http.get(gw.url("dead", path="/api/v1/Docs"))
        late = http.get(gw.url("slow", path="/slow?seconds=5"))
    assert down.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert (down.status_code, late.status_code) == (502, 504)
    for answer in (down, late):
        assert answer.headers["content-type"].startswith("text/plain")
        assert "mitmproxy" not in answer.headers.get("server", "").lower()
    assert "Склад без сервера" in down.text and "Медленный склад" in late.text


def test_host_header_is_the_back_ends_unless_preserved(standin: Standin, gateway_factory: Factory,
                                                       tmp_path: Path) -> None:
    default = gateway_factory(gateway_config(tmp_path, standin), directory=tmp_path / "default")
    kept = gateway_factory(gateway_config(tmp_path, standin, proxy={"preserve_host": True}),
                           directory=tmp_path / "kept")
    for gw, expected in ((default, f"127.0.0.1:{standin.data_port}"), (kept, None)):
        with client(gw) as http:
            headers = {k.lower(): v for k, v in http.get(gw.url("b1", path="/echo/h")).json()["headers"].items()}
        assert headers["host"] == (expected or f"127.0.0.1:{gw.port('b1')}")
        assert headers["x-forwarded-host"] == f"127.0.0.1:{gw.port('b1')}"
