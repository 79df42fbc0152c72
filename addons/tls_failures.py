"""One log line for a failed client TLS handshake, in the gateway's words, and a counter by reason.

mitmproxy's own line names the back end's internal address as the "destination" and suggests a
``tls_version_client_min`` option this gateway does not have; it is dropped (a filter on its
logger) and replaced by: the client's address, the base, and what the client offered against
what the base accepts. Device certificate refusals are logged by ``ClientAuth`` (one line each,
too). What the client offered is kept from its ClientHello until the handshake ends, per worker.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass

from addons._context import listener_of
from addons.client_auth import DEVICE_REFUSED
from gateway.config import GatewayConfig
from mitmproxy import connection, tls

logger = logging.getLogger("gateway.tls")

MITMPROXY_LOGGER = "mitmproxy.proxy.server"
MITMPROXY_PREFIX = "Client TLS handshake failed."
VERSIONS = {0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3", 0x0300: "SSLv3"}
SUPPORTED_VERSIONS = 43
REASONS = ("protocol-version", "no-shared-cipher", "no-shared-group", "untrusted-server-certificate",
           "client-closed", "not-tls", "other")
# Failed handshakes by reason, read by Metrics (gateway_tls_handshake_failures).
counters: Counter[str] = Counter()


@dataclass(frozen=True)
class _Offer:
    versions: tuple[str, ...]
    ciphers: int


class _DropMitmproxyLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(MITMPROXY_PREFIX)


_filter = _DropMitmproxyLine()


def offered_versions(client_hello: tls.ClientHello) -> tuple[str, ...]:
    for kind, data in client_hello.extensions:
        if kind == SUPPORTED_VERSIONS and data:
            codes = [int.from_bytes(data[i:i + 2], "big") for i in range(1, 1 + data[0], 2)]
            return tuple(VERSIONS[c] for c in codes if c in VERSIONS)
    raw = client_hello.raw_bytes(wrap_in_record=False)
    legacy = int.from_bytes(raw[:2], "big")
    # Without the extension a client offers every version up to its legacy_version.
    return tuple(name for code, name in sorted(VERSIONS.items()) if 0x0301 <= code <= legacy)


def failure_reason(error: str) -> str:
    text = error.lower()
    if "unsupported protocol" in text or "version" in text and "agree" in text:
        return "protocol-version"
    if "no shared cipher" in text:
        return "no-shared-cipher"
    if "no suitable key share" in text or "no shared group" in text or "no suitable" in text:
        return "no-shared-group"
    if "does not trust" in text or "unknown ca" in text or "bad certificate" in text or "certificate unknown" in text:
        return "untrusted-server-certificate"
    if text.startswith("the client disconnected during the handshake") or text == "connection closed early":
        return "client-closed"
    if "cannot parse clienthello" in text or "does not speak tls" in text or "http request" in text:
        return "not-tls"
    return "other"


class TlsFailures:
    def __init__(self) -> None:
        self._offers: dict[str, _Offer] = {}
        self._accepts = "TLSv1.2, TLSv1.3"

    def apply_config(self, cfg: GatewayConfig) -> None:
        self._accepts = "TLSv1.3" if cfg.tls.min_version == "1.3" else "TLSv1.2, TLSv1.3"
        mitmproxy_logger = logging.getLogger(MITMPROXY_LOGGER)
        if _filter not in mitmproxy_logger.filters:
            mitmproxy_logger.addFilter(_filter)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        try:
            hello = data.client_hello
            self._offers[data.context.client.id] = _Offer(offered_versions(hello), len(hello.cipher_suites))
        except Exception:  # only facts for a log line; the handshake itself decides
            logger.debug("could not read a ClientHello's versions", exc_info=True)

    def tls_established_client(self, data: tls.TlsData) -> None:
        self._offers.pop(data.context.client.id, None)

    def client_disconnected(self, client: connection.Client) -> None:
        self._offers.pop(client.id, None)

    def tls_failed_client(self, data: tls.TlsData) -> None:
        client = data.context.client
        offer = self._offers.pop(client.id, None)
        error = client.error or ""
        if error.startswith(DEVICE_REFUSED):
            return
        reason = failure_reason(error)
        counters[reason] += 1
        listener = listener_of(client)
        base = listener.base.name if listener is not None else "?"
        host = client.peername[0] if client.peername else ""
        # A client closing mid-handshake is what port probes and health checks do: not a warning.
        level = logging.INFO if reason == "client-closed" else logging.WARNING
        logger.log(level, "%s: TLS handshake refused on base %r: %s", host, base, self._explain(reason, offer, error),
                   extra={"event": "tls-handshake-failed", "base": base, "client": host, "reason": reason})

    def _explain(self, reason: str, offer: _Offer | None, error: str) -> str:
        offered = ", ".join(offer.versions) if offer and offer.versions else "unknown versions"
        if reason == "protocol-version":
            return f"the client offers {offered}; the base accepts {self._accepts}"
        if reason == "no-shared-cipher":
            count = offer.ciphers if offer else 0
            return (f"no cipher suite in common: the client offers {count} ({offered}), none of the base's "
                    "(ECDHE with AES-GCM or ChaCha20-Poly1305)")
        if reason == "no-shared-group":
            return f"no key-exchange group in common ({offered}); the base accepts X25519, P-256 and P-384"
        if reason == "untrusted-server-certificate":
            return "the client does not trust the gateway's certificate (install the CA, or use an ACME certificate)"
        if reason == "not-tls":
            return "the client does not speak TLS here (plain HTTP on an https port?)"
        if reason == "client-closed":
            return "the client closed the connection during the handshake"
        return _openssl_words(error)


def _openssl_words(error: str) -> str:
    """OpenSSL's own reason, without mitmproxy's wrapping (which names the back end's address)."""
    inner = error[error.index("(") + 1:error.rindex(")")] if "(" in error and ")" in error else error
    reasons = re.findall(r"'([^']*)'\)", inner)
    return "; ".join(r for r in reasons if r) or "the handshake failed"
