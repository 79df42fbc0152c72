"""The optional enrolment listener: plain HTTP on its own port, serving only the local CA
certificate and a page with its fingerprint, so devices can be set up to trust the gateway.

Not a mitmproxy listener: it must never reach a back end. The port is bound in
``apply_config`` (a busy port refuses the configuration); serving starts on the event loop.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.web.sidelistener import Address, SideListener, SideRequest
from gateway.certs.enrolment import EnrolmentContent, answer, encode, lan_addresses
from gateway.certs.inspect import load_local_ca, local_ca_served
from gateway.config import GatewayConfig
from gateway.auth.throttle import Throttle
from gateway.store import Store, open_for_gateway
from gateway.web.device_enrolment import DeviceLinks, is_link_path
from gateway.web.server_tls import DefaultCertificateContext

# The code form's body: one short field.
MAX_BODY = 512

logger = logging.getLogger("gateway.enrolment")


class Enrolment:
    def __init__(self) -> None:
        self._listener = SideListener("enrolment.listen", self._respond, max_body=MAX_BODY)
        self._content: EnrolmentContent | None = None
        self._links: DeviceLinks | None = None
        self._store: Store | None = None
        self._store_key: tuple[Any, ...] | None = None
        self._tls = DefaultCertificateContext()

    def apply_config(self, cfg: GatewayConfig) -> None:
        # Offered only while a base serves a certificate of it (after `cert import` none may).
        ca = load_local_ca(cfg) if local_ca_served(cfg) else None
        self._content = EnrolmentContent.for_ca(ca, cfg.tls.hosts, lan_addresses(), cfg.enrolment.listen,
                                                 "https" if cfg.enrolment.https else "http") \
            if ca is not None else None
        wanted = Address(cfg.enrolment.host, cfg.enrolment.listen) if cfg.enrolment.enabled else None
        context = self._tls.for_config(cfg) if wanted is not None and cfg.enrolment.https else None
        if context is not None:
            self._open_links(cfg)
        if self._listener.move(wanted, context) and wanted is not None:  # raises: configuration refused
            logger.info("enrolment page on %s://%s:%d/ (CA certificate%s)", "https" if context else "http",
                        wanted.host, wanted.port, ", one-time device links" if context else " only")

    def _open_links(self, cfg: GatewayConfig) -> None:
        key = (cfg.state_dir, cfg.store.backend, cfg.store.redis_url)
        if key != self._store_key:
            old = self._store
            self._store = open_for_gateway(cfg.state_dir, cfg.store, reports=False)
            self._store_key = key
            if old is not None:
                old.close()
        assert self._store is not None
        self._links = DeviceLinks(cfg.state_dir, self._store, Throttle(self._store, cfg.throttle))


    def running(self) -> None:
        self._listener.running()

    def done(self) -> None:
        self._listener.stop()
        if self._store is not None:
            self._store.close()
            self._store, self._store_key = None, None

    @property
    def port(self) -> int | None:
        return self._listener.port

    async def _respond(self, request: SideRequest) -> bytes:
        if is_link_path(request.path):
            if self._links is None or not request.tls:
                return encode(answer("GET", "/404", None))
            return await self._links.respond(request.method, request.path, request.body, request.peer, request.tls)
        reply = answer(request.method, request.target, self._content, request.headers.get("host"))
        return encode(reply, head_only=request.method == "HEAD")
