"""The optional enrolment listener: plain HTTP on its own port, serving only the local CA
certificate and a page with its fingerprint, so devices can be set up to trust the gateway.

Not a mitmproxy listener: it must never reach a back end. The port is bound in
``apply_config`` (a busy port refuses the configuration); serving starts on the event loop.
"""

from __future__ import annotations

import logging

from gateway.web.sidelistener import Address, SideListener, SideRequest
from gateway.certs.enrolment import EnrolmentContent, answer, encode, lan_addresses
from gateway.certs.inspect import load_local_ca, local_ca_served
from gateway.config import GatewayConfig
from gateway.auth.throttle import Throttle
from gateway.store import Store
from gateway.store.handle import StoreHandle
from gateway.web.device_enrolment import DeviceLinks, is_link_path
from gateway.web.server_tls import DefaultCertificateContext

# The code form's body: one short field.
MAX_BODY = 512

logger = logging.getLogger("gateway.enrolment")


class Enrolment:
    def __init__(self, stores: StoreHandle | None = None) -> None:
        """``stores``: the process's store (gateway.store.handle); its own when none is given."""
        self._own_stores = stores is None
        self._stores = stores or StoreHandle()
        self._listener = SideListener("enrolment.listen", self._respond, max_body=MAX_BODY)
        self._content: EnrolmentContent | None = None
        self._links: DeviceLinks | None = None
        self._store: Store | None = None
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
        self._store = self._stores.for_config(cfg)
        if self._own_stores:
            self._stores.settle(cfg)
        self._links = DeviceLinks(cfg.state_dir, self._store, Throttle(self._store, cfg.throttle))


    def running(self) -> None:
        self._listener.running()

    def done(self) -> None:
        self._listener.stop()
        self._store = None
        if self._own_stores:
            self._stores.close()

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
