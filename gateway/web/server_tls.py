"""The gateway's default certificate as a TLS server context for the small listeners beside
mitmproxy (the admin listener off loopback, the enrolment page over HTTPS): one place that
builds it, and rebuilds it only when the certificate files change."""

from __future__ import annotations

import ssl

from gateway.certs.load import read_password_file
from gateway.certs.sources import default_source, ensure_default_certificate
from gateway.config import GatewayConfig


class DefaultCertificateContext:
    def __init__(self) -> None:
        self._built: tuple[object, ssl.SSLContext] | None = None  # (certificate files' stamp, context)

    def for_config(self, cfg: GatewayConfig) -> ssl.SSLContext:
        cert, key = ensure_default_certificate(cfg)
        source = default_source(cfg)
        stamp = (cert, key, source.stamp())
        if self._built is not None and self._built[0] == stamp:
            return self._built[1]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        password = read_password_file(source.password_file) if source.password_file is not None else None
        context.load_cert_chain(cert, key, password=password)
        self._built = (stamp, context)
        return context
