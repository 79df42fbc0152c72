"""The engine's per-connection objects an idle connection does not need (gateway/run/engine_memory.py)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

from mitmproxy import options
from mitmproxy.connection import Client
from mitmproxy.proxy import layer, server
from mitmproxy.proxy.context import Context

from gateway.run import engine_memory


def make_layer() -> layer.Layer:
    client = Client(peername=("127.0.0.2", 5000), sockname=("127.0.0.1", 443), timestamp_start=time.time())
    return layer.NextLayer(Context(client, options.Options()))


def test_a_layer_gets_its_event_queue_only_when_an_event_waits() -> None:
    engine_memory.install()
    idle = make_layer()
    assert "_paused_event_queue" not in vars(idle)
    assert not idle._paused_event_queue and len(idle._paused_event_queue) == 0
    assert list(idle._paused_event_queue) == []
    assert "_paused_event_queue" not in vars(idle)  # reading made nothing that stays
    paused = make_layer()
    paused._paused_event_queue.append("first")
    paused._paused_event_queue.append("second")
    assert list(vars(paused)["_paused_event_queue"]) == ["first", "second"]
    assert paused._paused_event_queue.popleft() == "first"
    assert idle._paused is None


def test_the_swept_watchdog_closes_an_idle_connection_and_spares_a_busy_one(monkeypatch) -> None:
    engine_memory.install()
    assert server.TimeoutWatchdog is engine_memory.SweptWatchdog
    monkeypatch.setattr(engine_memory, "SWEEP_SECONDS", 0.05)
    fired: list[str] = []

    async def scenario() -> None:
        def on_timeout(name: str):
            async def callback() -> None:
                fired.append(name)
            return callback

        idle = server.TimeoutWatchdog(0.2, on_timeout("idle"))
        busy = server.TimeoutWatchdog(0.2, on_timeout("busy"))
        held = server.TimeoutWatchdog(0.2, on_timeout("held"))
        for dog in (idle, busy, held):
            await dog.watch()
        with held.disarm():  # a hook is running: never a timeout meanwhile
            for _ in range(8):
                busy.register_activity()
                await asyncio.sleep(0.06)
        assert fired == ["idle"]
        await asyncio.sleep(0.4)  # held and busy are now idle past their timeout too
        assert sorted(fired) == ["busy", "held", "idle"]

    asyncio.run(scenario())


def tls_pair() -> tuple[Any, Any, ssl.MemoryBIO, ssl.MemoryBIO]:
    """A pyOpenSSL server connection on memory BIOs (as mitmproxy drives it) and a client, shaken hands."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.use_certificate(crypto.X509.from_cryptography(cert))
    context.use_privatekey(crypto.PKey.from_cryptography_key(key))
    server = SSL.Connection(context)
    server.set_accept_state()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_context = ssl.create_default_context()
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    client = client_context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    for _ in range(10):
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            server.bio_write(outgoing.read())
            try:
                server.do_handshake()
            except SSL.WantReadError:
                pass
            incoming.write(drain(server))
    server.bio_write(outgoing.read())  # the client's Finished
    return server, client, incoming, outgoing


def drain(server: Any) -> bytes:
    data = b""
    while True:
        try:
            data += server.bio_read(65535)
        except SSL.WantReadError:
            return data


def test_a_drained_bio_is_replaced_and_the_connection_goes_on() -> None:
    server, client, incoming, outgoing = tls_pair()
    server.sendall(b"x" * 60_000)
    assert not engine_memory.fresh_bio(server, write=True)  # 60 KB waiting: kept
    incoming.write(drain(server))
    assert engine_memory.fresh_bio(server, write=True)
    received = b""
    while len(received) < 60_000:
        received += client.read(65536)
    assert received == b"x" * 60_000
    client.write(b"y" * 30_000)
    server.bio_write(outgoing.read())
    got = b""
    while len(got) < 30_000:
        got += server.recv(65536)
    assert engine_memory.fresh_bio(server, write=False)
    server.sendall(b"after")
    client.write(b"again")
    incoming.write(drain(server))
    server.bio_write(outgoing.read())
    assert client.read(100) == b"after" and server.recv(100) == b"again"
