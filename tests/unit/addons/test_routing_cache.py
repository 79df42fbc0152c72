"""Routing's forwarding headers, made once per (address, TLS, Host), and the endpoint's parsed back
end: the cached answers are the ones made afresh, and a changed input never gets an old answer."""

from __future__ import annotations

import dataclasses
import random

from addons import routing
from gateway.config import Endpoint


def _fresh(address: str, tls: bool, host: str) -> dict[bytes, bytes]:
    proto = "https" if tls else "http"
    node = f'"[{address}]"' if ":" in address else address
    forwarded = f"for={node};proto={proto}" + (f';host="{host}"' if host and '"' not in host else "")
    return {b"X-Forwarded-For": address.encode(), b"X-Forwarded-Proto": proto.encode(),
            b"X-Forwarded-Host": host.encode(), b"Forwarded": forwarded.encode(), b"X-Real-IP": address.encode()}


def test_forwarding_headers_are_made_as_afresh(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(routing, "FORWARDING_CACHED", 5)
    monkeypatch.setattr(routing, "_forwarding", {})
    rng = random.Random(3)
    addresses = ["10.0.0.1", "10.0.0.2", "2001:db8::1", "192.168.1.50"]
    hosts = ["", "gw.example", "gw.example:8443", 'bad"host', "склад.example"]
    for _ in range(3000):
        address, tls, host = rng.choice(addresses), rng.random() < 0.5, rng.choice(hosts)
        made = dict(routing.forwarding_headers(address, tls, host))
        assert made == _fresh(address, tls, host)
        assert len(routing._forwarding) <= 5


def test_endpoint_parses_its_back_end_once_and_a_new_one_again() -> None:
    endpoint = Endpoint(listen=8443, backend="http://10.1.1.1:8080")
    assert (endpoint.backend_host, endpoint.backend_port) == ("10.1.1.1", 8080)
    moved = dataclasses.replace(endpoint, backend="https://backend.example")
    assert (moved.backend_host, moved.backend_port) == ("backend.example", 443)
    assert (endpoint.backend_host, endpoint.backend_port) == ("10.1.1.1", 8080)
    assert moved == Endpoint(listen=8443, backend="https://backend.example")  # the cache is not a field
