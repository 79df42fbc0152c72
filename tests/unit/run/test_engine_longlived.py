"""A long-lived client connection forgets its closed back-end connections (gateway/run/engine_longlived.py).

mitmproxy itself, in this process, as a reverse proxy on real sockets with TLS to the client, in
front of a small HTTP/1.1 back end: an HTTP/2 client (a new back-end connection per request) and
an HTTP/1.1 client whose back end closes after every answer (the half-closed path) each send many
requests on one connection; the client connection's ``HttpLayer`` must not keep them all.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from pathlib import Path
from typing import Callable

import h2.connection
import httpx
import pytest
from mitmproxy import options
from mitmproxy.addons import next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master
from mitmproxy.proxy.layers.http import HttpLayer
from mitmproxy.proxy.layers.http._http_h2 import BufferedH2Connection

from gateway.certs.context import alpn_selector
from gateway.run import engine_longlived

REQUESTS = 40


async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive, except that after answering a path with ``idle-close`` in it the
    connection is closed (no ``Connection: close``: the client connection stays open)."""
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            if b"idle-close" in head.split(b"\r\n", 1)[0]:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kept_backend_connections(alpn: bytes | None) -> list[int]:
    """For each live client connection with this ALPN: how many back-end connections its layer holds."""
    return [len([c for c in layer.connections if c is not layer.context.client])
            for layer in gc.get_objects()
            if isinstance(layer, HttpLayer) and layer.context.client.connected and layer.context.client.alpn == alpn]


async def proxy_and_send(tmp_path: Path, *, http2: bool, path: str, pause: float = 0.0,
                         before_close: Callable[[], object] = lambda: None) -> tuple[list[int], int]:
    server = await asyncio.start_server(backend, "127.0.0.1", 0)
    backend_port = server.sockets[0].getsockname()[1]
    port = free_port()
    opts = options.Options()
    master = Master(opts)
    master.addons.add(proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig())
    # lazy: as the gateway runs it; the back end is reached per request, so HTTP/2 is offered to clients.
    opts.update(confdir=str(tmp_path), connection_strategy="lazy", mode=[f"reverse:http://127.0.0.1:{backend_port}@127.0.0.1:{port}"])
    running = asyncio.create_task(master.run())
    try:
        for _ in range(100):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        # The proxy's certificate is from the CA it made in tmp_path; what is tested is what it
        # keeps per connection, not the certificate.
        async with httpx.AsyncClient(http2=http2, verify=False) as client:
            versions = set()
            for _ in range(REQUESTS):
                versions.add((await client.get(f"https://127.0.0.1:{port}{path}")).http_version)
                await asyncio.sleep(pause)
            assert versions == {"HTTP/2" if http2 else "HTTP/1.1"}
            # The last back-end connection's close reaches the layer a moment after its answer.
            kept: list[int] = []
            for _ in range(40):
                await asyncio.sleep(0.05)
                kept = kept_backend_connections(b"h2" if http2 else b"http/1.1")
                if kept and max(kept) <= 1:
                    break
            opened = REQUESTS
            before_close()
        return kept, opened
    finally:
        master.shutdown()
        await running
        server.close()


@pytest.fixture(autouse=True)
def gateway_alpn(monkeypatch) -> None:
    """h2 first when the client offers it, as the gateway's contexts choose (mitmproxy's own
    follows the client's order, and httpx offers http/1.1 first)."""
    monkeypatch.setattr(tlsconfig, "alpn_select_callback", alpn_selector(True))


def test_an_http2_client_does_not_keep_a_closed_backend_connection_per_request(tmp_path: Path) -> None:
    engine_longlived.install()
    kept, opened = asyncio.run(proxy_and_send(tmp_path, http2=True, path="/"))
    # One client connection; it opened a back-end connection per request and holds at most the last.
    assert len(kept) == 1 and kept[0] <= 1, (kept, opened)


def test_an_http2_connection_remembers_only_its_last_closed_streams(tmp_path: Path, monkeypatch) -> None:
    engine_longlived.install()
    assert BufferedH2Connection.MAX_CLOSED_STREAMS == engine_longlived.CLOSED_STREAMS_KEPT
    assert h2.connection.H2Connection.MAX_CLOSED_STREAMS == 2**16  # h2 itself, for other users, unchanged
    # A smaller bound than the gateway's, so that a short run passes it: the mechanism is the same.
    monkeypatch.setattr(BufferedH2Connection, "MAX_CLOSED_STREAMS", 8)
    remembered: list[int] = []
    original = BufferedH2Connection.__init__

    def keep_count(self, config):  # the proxy's server side of the client's connection
        original(self, config)
        if not config.client_side:
            remembered.append(id(self))
    monkeypatch.setattr(BufferedH2Connection, "__init__", keep_count)
    asyncio.run(proxy_and_send(tmp_path, http2=True, path="/", before_close=lambda: remembered.extend(
        len(c._closed_streams) for c in gc.get_objects()
        if isinstance(c, BufferedH2Connection) and id(c) in remembered[:1])))
    assert remembered[1:] == [8], remembered  # 40 streams answered; the last 8 remembered


def test_a_backend_that_closes_after_each_answer_is_forgotten_too(tmp_path: Path) -> None:
    engine_longlived.install()
    # The back end closes each keep-alive connection right after its answer, as at the end of its
    # keep-alive timeout; the pause lets the close arrive before the next request.
    kept, opened = asyncio.run(proxy_and_send(tmp_path, http2=False, path="/idle-close", pause=0.05))
    assert len(kept) == 1 and kept[0] <= 1, (kept, opened)


def test_install_refuses_a_changed_mitmproxy(monkeypatch) -> None:
    monkeypatch.setattr(engine_longlived, "_installed", False)
    monkeypatch.setattr(HttpLayer, engine_longlived._HALF_CLOSED, set(), raising=False)
    try:
        engine_longlived.install()
    except engine_longlived.MitmproxyMoved as e:
        assert "engine_longlived.py" in str(e)
    else:
        raise AssertionError("install() accepted a layer it does not know")
