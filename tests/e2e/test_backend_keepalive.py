"""An idle client's back-end connection is closed after ``proxy.keepalive_timeout`` (issue 22),
and the client's next request on the same connection is answered normally: over HTTP/1.1, over
HTTP/2, and behind a PROXY-protocol balancer. One gateway process for all three.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from pathlib import Path
from typing import Callable

import httpx
import psutil

from gateway.traffic.proxy_protocol import encode_v1
from tests.harness import RunningGateway, Standin, base_entry, gateway_config

KEEPALIVE = 1.0


def backend_connections(gw: RunningGateway, standin: Standin) -> int:
    return sum(1 for c in psutil.Process(gw.process.pid).net_connections("tcp")
               if c.raddr and c.raddr.port == standin.data_port and c.status == psutil.CONN_ESTABLISHED)


def wait_for_backend_connections(gw: RunningGateway, standin: Standin, count: int, timeout: float = 6.0) -> None:
    deadline = time.monotonic() + timeout
    while backend_connections(gw, standin) != count:
        assert time.monotonic() < deadline, f"{backend_connections(gw, standin)} back-end connections, not {count}"
        time.sleep(0.1)


def test_an_idle_clients_backend_connection_closes_and_its_next_request_is_answered(
        tmp_path: Path, standin: Standin, gateway_factory: Callable[..., RunningGateway]) -> None:
    plain = base_entry(standin, "b1")
    plain["data"]["proxy_protocol"] = {"enabled": False}
    balanced = base_entry(standin, "b2")
    config = gateway_config(tmp_path, standin, bases=[plain, balanced],
                            proxy={"backend_timeout": 5, "keepalive_timeout": KEEPALIVE},
                            proxy_protocol={"enabled": True, "trusted": ["127.0.0.1"]})
    gw = gateway_factory(config)
    verify = ssl.create_default_context(cafile=gw.ca_file)

    for http2 in (False, True):
        with httpx.Client(verify=verify, http2=http2, base_url=gw.url("b1"), timeout=10) as client:
            first = client.get("/echo", params={"n": 1})
            assert first.status_code == 200 and first.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            if not http2:  # mitmproxy gives each HTTP/2 stream its own HTTP/1 back-end connection
                assert backend_connections(gw, standin) == 1  # kept while the client is active
            wait_for_backend_connections(gw, standin, 0)  # idle: closed by the timeout
            again = client.get("/echo", params={"n": 2})  # the same client connection
            assert again.status_code == 200 and again.json()["query"] == "n=2"
        wait_for_backend_connections(gw, standin, 0)

    # Behind a balancer: the PROXY header opens the connection, then TLS and keep-alive requests.
    raw = socket.create_connection(("127.0.0.1", gw.port("b2")), timeout=10)
    raw.sendall(encode_v1(("203.0.113.7", 40000), ("127.0.0.1", gw.port("b2"))))
    h1 = ssl.create_default_context(cafile=gw.ca_file)  # httpx set h2 in the ALPN of the other
    with h1.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        for n in (1, 2):
            tls.sendall(f"GET /echo?n={n} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            response = http.client.HTTPResponse(tls)
            response.begin()
            body = response.read()
            assert response.status == 200 and b"203.0.113.7" in body  # the header's client, both times
            if n == 1:
                wait_for_backend_connections(gw, standin, 0)
    assert "Traceback" not in gw.log()
