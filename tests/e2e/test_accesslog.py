"""Access and security log: JSON lines with the right verdicts, never a secret; text for people;
a log file that rotates by size."""

from __future__ import annotations

import base64
import json
import logging
import ssl
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from gateway.config import LogSettings
from gateway.ops.logsetup import JsonFormatter, TextFormatter, configure_logging
from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config

PASSWORD, BARCODE, WRONG = "Sklad2024xQ", "4600000000093", "Wrong12345zz"
URL_PASSWORD, URL_BARCODE = "UrlSecret77x", "2900000012345"
SECRETS = (PASSWORD, BARCODE, WRONG, URL_PASSWORD, URL_BARCODE)


def basic(login: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


def every_encoding(secret: str) -> list[str]:
    """The secret as it could leak: plain, and inside base64 of the usual login:secret forms."""
    forms = [secret]
    for text in (f":{secret}", f"Иванов:{secret}", f"u:{secret}"):
        forms.append(base64.b64encode(text.encode()).decode().rstrip("="))
    return forms


def access_entries(log: str) -> list[dict[str, Any]]:
    entries = []
    for line in log.splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)  # every line is one JSON object
        if entry.get("logger") == "gateway.access":
            entries.append(entry)
    return entries


def cli(gw: RunningGateway, *args: str, input: str | None = None) -> None:
    cli_ok(gw.directory, *args, input=input)


def test_json_access_log_has_verdicts_and_no_secrets(standin: Standin, gateway_factory: Callable[..., RunningGateway],
                                                     tmp_path: Path) -> None:
    secured = base_entry(standin, "b1", "Склад 15", user_auth=True, login_by_barcode=True)
    open_base = base_entry(standin, "b2", "Открытая")
    dead = base_entry(standin, "b3", "Нет связи", data={"listen": free_port(), "backend": f"http://127.0.0.1:{free_port()}"})
    dead.pop("print")
    config = gateway_config(tmp_path, standin, bases=[secured, open_base, dead], log={"format": "json"})
    gw = gateway_factory(config)
    cli(gw, "group", "add", "Операторы", "--role", "mobile", "--doc-type", "Поступление")
    cli(gw, "user", "add", "Иванов", "--group", "Операторы", "--password-stdin", "--barcode-stdin",
        input=f"{PASSWORD}\n{BARCODE}\n")

    verify = ssl.create_default_context(cafile=gw.ca_file)
    with httpx.Client(verify=verify, timeout=10) as http:
        assert http.get(gw.url("b1", path="/echo/ok"), headers=basic("", PASSWORD)).status_code == 200
        assert http.get(gw.url("b1", path="/echo/barcode"), headers={"Authorization": f"Basic :{BARCODE}"}).status_code == 200
        assert http.get(gw.url("b1", path="/echo/wrong"), headers=basic("Иванов", WRONG)).status_code == 401
        session = http.get(gw.url("b2", path=f"/api/v1/session?username=u&password={URL_PASSWORD}"))
        assert session.status_code == 200
        assert http.get(gw.url("b2", path=f"/echo/scan?barcode={URL_BARCODE}&n=1")).status_code == 200
        upload = http.post(gw.url("b2", path="/echo/upload"), content=b"x" * 5000)
        assert upload.status_code == 200
        chunked = http.post(gw.url("b2", path="/echo/chunked"), content=iter([b"a" * 3000, b"b" * 4000]))
        assert chunked.status_code == 200 and chunked.json()["body_length"] == 7000
        assert http.get(gw.url("b3", path="/api/v1/Docs")).status_code == 502
        big = http.get(gw.url("b2", path="/api/v1/Products?$top=3000"))
        assert big.status_code == 200
    gw.wait_for_log(r'"path": "/api/v1/Products')
    gw.stop()
    log = gw.log()

    for secret in SECRETS:
        for form in every_encoding(secret):
            assert form not in log, f"a secret ({secret[:3]}…) reached the log"

    by_path = {e["path"]: e for e in access_entries(log)}
    ok = by_path["/echo/ok"]
    assert (ok["verdict"], ok["status"], ok["user"], ok["role"], ok["base"]) == ("allowed", 200, "Иванов", "mobile", "Склад 15")
    assert ok["client"] == "127.0.0.1" and ok["method"] == "GET" and ok["duration_ms"] >= 0
    assert by_path["/echo/barcode"]["user"] == "Иванов"
    assert (by_path["/echo/wrong"]["verdict"], by_path["/echo/wrong"]["status"]) == ("denied-auth", 401)
    assert by_path["/api/v1/session?username=u&password=***"]["verdict"] == "allowed"
    assert "/echo/scan?barcode=***&n=1" in by_path
    assert by_path["/echo/upload"]["bytes_in"] == 5000
    assert by_path["/echo/upload"]["bytes_out"] == int(upload.headers["content-length"])
    assert by_path["/echo/chunked"]["bytes_in"] == 7000
    assert (by_path["/api/v1/Docs"]["verdict"], by_path["/api/v1/Docs"]["status"]) == ("backend-error", 502)
    # A chunked (unknown-length) body is counted as it streams through.
    assert by_path["/api/v1/Products?$top=3000"]["bytes_out"] == len(big.content)
    # Security events travel in the same stream, with an event field.
    events = [json.loads(line).get("event") for line in log.splitlines() if line.strip()]
    assert "backend-error" in events


def record(name: str, msg: str, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_formats_carry_structured_fields() -> None:
    event = record("gateway.auth", "address 10.0.0.9 banned", event="ip-banned", client="10.0.0.9", failures=10)
    as_json = json.loads(JsonFormatter().format(event))
    assert (as_json["event"], as_json["client"], as_json["failures"], as_json["level"]) == ("ip-banned", "10.0.0.9", 10, "info")
    assert TextFormatter().format(event).endswith("address 10.0.0.9 banned [event=ip-banned client=10.0.0.9 failures=10]")
    access = record("gateway.access", "127.0.0.1 - [b] GET / 200 5B 1ms allowed", status=200, verdict="allowed")
    assert TextFormatter().format(access).endswith("GET / 200 5B 1ms allowed")  # no repeated fields
    assert json.loads(JsonFormatter().format(access))["verdict"] == "allowed"


@pytest.fixture
def restore_logging() -> Any:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("gateway").setLevel(logging.NOTSET)


def test_log_file_rotates_by_size(tmp_path: Path, restore_logging: Any) -> None:
    log_file = tmp_path / "logs" / "gateway.log"
    configure_logging(LogSettings(format="json", file=log_file, max_bytes=2000, backups=2, level="WARNING"))
    access = logging.getLogger("gateway.access")
    for i in range(100):
        logging.getLogger("gateway.test").warning("line %d", i, extra={"event": "test", "n": i})
        access.info("not written at WARNING %d", i)
    files = sorted(p.name for p in log_file.parent.iterdir())
    assert files == ["gateway.log", "gateway.log.1", "gateway.log.2"]
    text = log_file.read_text(encoding="utf-8")
    assert all(json.loads(line)["event"] == "test" for line in text.splitlines())
    assert all(p.stat().st_size <= 2000 for p in log_file.parent.iterdir())


def test_client_that_leaves_early_is_logged_499_not_a_back_end_error(
        standin: Standin, gateway_factory: Callable[..., RunningGateway], tmp_path: Path) -> None:
    import socket as socket_module
    import ssl as ssl_module
    import time as time_module

    gw = gateway_factory(gateway_config(tmp_path, standin, log={"format": "json"}))
    context = ssl_module.create_default_context(cafile=gw.ca_file)
    raw = socket_module.create_connection(("127.0.0.1", gw.port("b1")), timeout=10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /slow?seconds=2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time_module.sleep(0.3)
    gw.wait_for_log(r'"verdict": "client-closed"', timeout=10)
    entries = [e for e in access_entries(gw.log()) if e.get("path", "").startswith("/slow")]
    assert entries and entries[-1]["status"] == 499
    assert not any(e.get("verdict") == "backend-error" for e in access_entries(gw.log()))
    assert "back end" not in gw.log()


def test_a_connect_request_is_a_bad_request_not_a_back_end_error(
        standin: Standin, gateway_factory: Callable[..., RunningGateway], tmp_path: Path) -> None:
    """A reverse proxy is no forward proxy: CONNECT is refused with 501 (issue 10) while the head
    is read, and logged as the client's fault, never as a failing back end."""
    import socket as socket_module

    gw = gateway_factory(gateway_config(tmp_path, standin, log={"format": "json"}))
    context = ssl.create_default_context(cafile=gw.ca_file)
    raw = socket_module.create_connection(("127.0.0.1", gw.port("b1")), timeout=10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(f"CONNECT 127.0.0.1:{standin.data_port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert tls.recv(4096).startswith(b"HTTP/1.1 501 ")
    gw.wait_for_log(r'"verdict": "bad-request"')
    assert "CONNECT is not supported" in gw.log()
    assert '"event": "backend-error"' not in gw.log()
