"""ACME certificates in the running gateway: answers HTTP-01 on ``acme.challenge_listen``
(a plain-HTTP side listener answering only /.well-known/acme-challenge/<token>), supplies the
TLS-ALPN-01 certificate to GatewayTls, and runs the renewal loop.

The order itself (gateway/autocert) runs in a worker thread; the new certificate is written
to its file and GatewayTls's file watcher swaps it in: new connections get it, open ones
continue. Challenge answers are files under state_dir/acme/challenges, so whichever gateway
process (or `gateway cert acme renew`) placed the order, every process answers it.

The store (the process's one, gateway.store.handle) may be down when the gateway starts (a
reboot during a Redis outage): the bases serve the certificate already on disk, or the local
CA's placeholder before the first order, and the renewal loop waits for the store, asking it
every ``STORE_RETRY_SECONDS``, then orders and renews as usual — no restart.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from OpenSSL import SSL

from addons._background import BackgroundTask
from gateway.web.sidelistener import Address, SideListener, SideRequest
from gateway.certs import acme_storage as storage
from gateway.autocert.alpn import ACME_TLS_1, name_from_sni
from gateway.autocert.challenge import PREFIX, answer
from gateway.config import GatewayConfig
from gateway.autocert.manager import challenge_address
from gateway.store import StoreUnavailable
from gateway.store.handle import StoreHandle
from gateway.autocert.manager import acme_bases, refresh_renewal_info, renew_due, seconds_to_next_check

logger = logging.getLogger("gateway.acme")

# How often due certificates and renewal information are looked at; orders are rare, checks cheap.
CHECK_SECONDS = 60.0
# While the store cannot be reached: how often the renewal loop asks whether it is back.
STORE_RETRY_SECONDS = 2.0
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nNot Found\n"


def alpn_challenge_context(state_dir: Path, sni: str | None, store: Any = None) -> SSL.Context | None:
    """A context presenting the acme-tls/1 certificate for ``sni``, when an order placed one
    (here, or on another machine sharing the store)."""
    if not sni:
        return None
    name = name_from_sni(sni)
    try:
        pem = storage.alpn_challenge_file(state_dir, name).read_bytes()
    except OSError:
        shared = _shared(store, storage.shared_alpn_key(name))
        if shared is None:
            return None
        pem = shared.encode("ascii")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from OpenSSL import crypto

    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate(crypto.X509.from_cryptography(x509.load_pem_x509_certificate(pem)))
    context.use_privatekey(crypto.PKey.from_cryptography_key(serialization.load_pem_private_key(pem, None)))  # type: ignore[arg-type]
    context.set_alpn_select_callback(
        lambda _conn, offered: ACME_TLS_1 if ACME_TLS_1 in offered else SSL.NO_OVERLAPPING_PROTOCOLS)
    return context


def _shared(store: Any, key: str) -> str | None:
    if store is None:
        return None
    try:
        return store.get_shared(key)  # type: ignore[no-any-return]
    except Exception as e:  # noqa: BLE001 — no answer is a 404 / failed validation, nothing worse
        logger.warning("ACME challenge answer not readable from the store: %s", e)
        return None


def offers_acme_tls(alpn_offers: list[bytes] | tuple[bytes, ...] | None) -> bool:
    # RFC 8737: the CA offers acme-tls/1 and nothing else; ordinary clients never do.
    return bool(alpn_offers) and list(alpn_offers or ()) == [ACME_TLS_1]


class AutoCert:
    def __init__(self, stores: StoreHandle | None = None) -> None:
        """``stores``: the process's store (gateway.store.handle); its own when none is given."""
        self._own_stores = stores is None
        self._stores = stores or StoreHandle()
        self._waiting_for_store = False
        self._listener = SideListener("acme.challenge_listen", self._respond)
        self._config: GatewayConfig | None = None
        self._loop_task = BackgroundTask(self._renewals)
        self._wake = asyncio.Event()
        self._store: Any = None

    def apply_config(self, cfg: GatewayConfig) -> None:
        # Port 80 is bound only when some base needs it, and by one process only: workers other
        # than the first get challenge_listen 0 (gateway/run/runner.py) and answer nothing there.
        where = challenge_address(cfg)
        wanted = Address(*where) if where is not None else None
        if self._listener.move(wanted) and wanted is not None:  # raises: configuration refused
            logger.info("ACME challenge listener on http://%s:%d%s…", wanted.host, wanted.port, PREFIX)
        self._open_store(cfg)
        self._config = cfg
        self._wake.set()

    def _open_store(self, cfg: GatewayConfig) -> None:
        # A store that cannot be reached does not refuse the configuration (the renewal loop
        # waits for it); a wrong key file or a damaged database does.
        self._store = self._stores.for_config(cfg) if cfg.acme.enabled else None
        if self._own_stores:
            self._stores.settle(cfg)

    @property
    def store(self) -> Any:
        return self._store

    @property
    def port(self) -> int | None:
        return self._listener.port

    def running(self) -> None:
        self._listener.running()
        self._loop_task.start()

    def done(self) -> None:
        self._listener.stop()
        self._store = None
        if self._own_stores:
            self._stores.close()
        self._loop_task.stop()

    async def _respond(self, request: SideRequest) -> bytes:
        cfg = self._config
        if cfg is None or request.method not in ("GET", "HEAD"):
            return NOT_FOUND
        body = answer(cfg.state_dir, request.path)
        if body is None and self._store is not None and request.path.startswith(PREFIX):
            token = request.path[len(PREFIX):]
            shared = await asyncio.get_running_loop().run_in_executor(
                None, _shared, self._store, storage.shared_http_key(token))
            body = shared.encode("ascii") if shared is not None else None
        if body is None:
            return NOT_FOUND
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode("ascii")
        return head if request.method == "HEAD" else head + body

    async def _renewals(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            cfg = self._config
            pause = CHECK_SECONDS
            store = self._store
            if cfg is not None and acme_bases(cfg):
                try:
                    await loop.run_in_executor(None, self._store_answers, store)
                    await loop.run_in_executor(None, lambda: renew_due(cfg, store=store))
                    await loop.run_in_executor(None, refresh_renewal_info, cfg)
                    pause = await loop.run_in_executor(None, seconds_to_next_check, cfg, CHECK_SECONDS)
                except StoreUnavailable as e:
                    pause = STORE_RETRY_SECONDS
                    if not self._waiting_for_store:
                        logger.warning("ACME orders and renewals wait for the store (%s); the certificates on disk "
                                       "keep serving, and they resume by themselves once it answers", e)
                    self._waiting_for_store = True
                except Exception:  # one bad round must not end renewals for good
                    logger.exception("ACME renewal check failed; trying again in %g s", CHECK_SECONDS)
            try:
                await asyncio.wait_for(self._wake.wait(), pause)
            except asyncio.TimeoutError:
                pass

    def _store_answers(self, store: Any) -> None:
        """Raises StoreUnavailable while the store cannot be reached: an order needs its lock."""
        if store is None:
            return
        store.version()
        if self._waiting_for_store:
            self._waiting_for_store = False
            logger.info("the store answers again; ACME orders and renewals resume")
