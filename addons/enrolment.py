"""The optional enrolment listener: plain HTTP on its own port, serving only the local CA
certificate and a page with its fingerprint, so devices can be set up to trust the gateway.

Not a mitmproxy listener: it must never reach a back end. The port is bound in
``apply_config`` (a busy port refuses the configuration); serving starts on the event loop.
"""

from __future__ import annotations

import logging

from gateway.web.sidelistener import Address, SideListener, SideRequest
from gateway.certs.enrolment import EnrolmentContent, answer, encode
from gateway.certs.inspect import load_local_ca, local_ca_served
from gateway.config import GatewayConfig
from gateway.certs.authority import default_names

logger = logging.getLogger("gateway.enrolment")


class Enrolment:
    def __init__(self) -> None:
        self._listener = SideListener("enrolment.listen", self._respond)
        self._content: EnrolmentContent | None = None

    def apply_config(self, cfg: GatewayConfig) -> None:
        # Offered only while a base serves a certificate of it (after `cert import` none may).
        ca = load_local_ca(cfg) if local_ca_served(cfg) else None
        self._content = EnrolmentContent.for_ca(ca, cfg.tls.hosts, lan_addresses(), cfg.enrolment.listen) \
            if ca is not None else None
        wanted = Address(cfg.enrolment.host, cfg.enrolment.listen) if cfg.enrolment.enabled else None
        if self._listener.move(wanted) and wanted is not None:  # raises: configuration refused
            logger.info("enrolment page on http://%s:%d/ (CA certificate only)", wanted.host, wanted.port)

    def running(self) -> None:
        self._listener.running()

    def done(self) -> None:
        self._listener.stop()

    @property
    def port(self) -> int | None:
        return self._listener.port

    async def _respond(self, request: SideRequest) -> bytes:
        reply = answer(request.method, request.target, self._content, request.headers.get("host"))
        return encode(reply, head_only=request.method == "HEAD")


def lan_addresses() -> tuple[str, ...]:
    """This machine's private LAN addresses, for the QR code when tls.hosts names none."""
    import ipaddress


    found = [ip for ip in default_names()[1] if ip.is_private and not ip.is_loopback and not ip.is_link_local]
    found.sort(key=lambda ip: ip.version)  # IPv4 first: what phones on a warehouse LAN use
    return tuple(str(ipaddress.ip_address(ip)) for ip in found)
