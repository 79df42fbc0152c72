"""Device certificates (mutual TLS): asks for a client certificate on bases with
``tls.client_auth`` optional or required, checks it in the handshake, and names the device.

Sits right after ``GatewayTls``: that addon creates the ``SSL.Connection`` in
``tls_start_client``; this one sets its verify mode and callback before the handshake starts.
The check itself (issuer, signature, dates, usage) is ``gateway.certs.devices``'s; this module
adds the revoked serials, polled from the store every ``POLL_SECONDS`` (shared by every worker
and machine, so a revocation is refused everywhere within about that), and refuses every device
certificate while the list is older than ``STALE_SECONDS`` (fail closed: a store that cannot be
read must not let a revoked terminal back in). The counters are per worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from OpenSSL import SSL, crypto

from addons._background import BackgroundTask
from addons._context import listener_of
from addons._guard import already_answered, deny, fail_closed
from gateway.certs.devices import (
    check_device_certificate, device_name_of, load_or_create_device_ca, load_trusted_cas, serial_text,
)
from gateway.config import GatewayConfig
from gateway.store import Store, StoreUnavailable
from gateway.store.handle import StoreHandle
from gateway.store.devices import Registry, mark_seen, read_registry
from addons.autocert import offers_acme_tls
from mitmproxy import connection, ctx, http, tls

logger = logging.getLogger("gateway.devices")

POLL_SECONDS = 0.5
STALE_SECONDS = 5.0
REREAD_SECONDS = 0.2
# `device list`'s "last seen": written at most this often per device, not per connection.
SEEN_EVERY_SECONDS = 60.0
DEVICE_REFUSED = "device certificate refused"
DEVICE_KEY = "gateway_device"  # flow.metadata: the device's name
REASONS = ("no-certificate", "unknown-ca", "bad-signature", "expired", "not-yet-valid", "not-for-clients",
           "revoked", "unknown-device", "list-unavailable", "handshake")
# Refusals by reason, read by Metrics (gateway_device_refusals).
counters: Counter[str] = Counter()


@dataclass(frozen=True)
class _BaseAuth:
    mode: str  # optional, required
    cas: tuple[x509.Certificate, ...]
    own_ca: bool  # the gateway's device CA: the store's registry names and revokes its devices


@dataclass
class _Verdict:
    """What the verify callback found, kept on the connection (its app data) for the hooks after."""
    reason: str = ""
    device: str = ""
    serial: str = ""


class ClientAuth:
    def __init__(self, stores: StoreHandle | None = None) -> None:
        """``stores``: the process's store (gateway.store.handle); its own when none is given."""
        self._own_stores = stores is None
        self._stores = stores or StoreHandle()
        self._bases: dict[str, _BaseAuth] = {}
        self._store: Store | None = None
        self._registry = Registry()
        self._refused: frozenset[str] = frozenset()
        self._fresh_at = 0.0
        self._reread_at = 0.0
        self._failing = False
        self._poller = BackgroundTask(self._poll)
        self._seen_written: dict[str, float] = {}

    # --- configuration -----------------------------------------------------------------------

    def apply_config(self, cfg: GatewayConfig) -> None:
        bases: dict[str, _BaseAuth] = {}
        own_ca = None
        for base in cfg.bases:
            pair = base.tls
            if pair is None or pair.client_auth == "off":
                continue
            if pair.client_ca is not None:
                bases[base.id] = _BaseAuth(pair.client_auth, tuple(load_trusted_cas(pair.client_ca)), False)
                continue
            own_ca = own_ca or load_or_create_device_ca(cfg.state_dir)
            bases[base.id] = _BaseAuth(pair.client_auth, (own_ca.certificate,), True)
        # Always: a user bound to devices logs in only from them, on every base (Auth asks).
        # The guarded store: a store that cannot be reached at start (a reboot during a Redis
        # outage) leaves the device list unread, so device certificates are refused until it
        # reads (fail closed) while every other base serves; a wrong key still refuses the config.
        store = self._stores.for_config(cfg)
        if store is not self._store:
            try:
                self._take(read_registry(store))
            except StoreUnavailable as e:
                logger.warning("the device list cannot be read yet (%s); device certificates are refused "
                               "until it can", e)
            self._store = store
        if self._own_stores:
            self._stores.settle(cfg)
        self._bases = bases
        global _active
        _active = self

    def _take(self, registry: Registry) -> None:
        self._registry, self._refused, self._fresh_at = registry, registry.refused_serials(), time.monotonic()

    # --- the revoked serials -----------------------------------------------------------------

    def running(self) -> None:
        self._poller.start()

    def done(self) -> None:
        self._poller.stop()
        self._store = None
        if self._own_stores:
            self._stores.close()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            store = self._store
            if store is None:
                continue
            try:
                self._take(await asyncio.to_thread(read_registry, store))
                if self._failing:
                    logger.info("the device list reads again; device certificates are checked as before")
                self._failing = False
            except Exception as e:
                # Once per outage: a store that is down for minutes must not log twice a second.
                if not self._failing:
                    # WARNING: the store's own ERROR (store-down) already names an outage, once.
                    logger.warning("reading the device list failed (%s); device certificates are refused "
                                   "%d s from now until it reads", e, STALE_SECONDS)
                self._failing = True

    # --- the handshake -----------------------------------------------------------------------

    @fail_closed
    def tls_start_client(self, tls_start: tls.TlsData) -> None:
        conn = tls_start.ssl_conn
        if conn is None:
            return
        listener = listener_of(tls_start.context.client)
        auth = self._bases.get(listener.base.id) if listener is not None else None
        if auth is None:
            return
        if offers_acme_tls(tls_start.context.client.alpn_offers) and not self._serves_base_context(conn, listener):
            # The CA validating an ACME TLS-ALPN-01 challenge (RFC 8737) has no device
            # certificate; GatewayTls gave it the challenge context, which carries no HTTP.
            return
        try:
            self._ask(conn, auth)
        except Exception:
            # Asking nothing would let a terminal without a certificate in: drop the connection.
            tls_start.ssl_conn = None
            raise

    @staticmethod
    def _serves_base_context(conn: SSL.Connection, listener: Any) -> bool:
        gateway_tls = _addon("gatewaytls")
        return gateway_tls is None or conn.get_context() is gateway_tls.context_for(listener)

    def _ask(self, conn: SSL.Connection, auth: _BaseAuth) -> None:
        verdict = _Verdict()
        conn.set_app_data(verdict)

        def verify(_conn: SSL.Connection, cert: crypto.X509, _errno: int, depth: int, _ok: int) -> bool:
            # OpenSSL has no trust store for clients here: the leaf is checked below, against the
            # base's CA, and whatever the client sent above it is not trusted for anything.
            if depth > 0:
                return True
            try:
                leaf = cert.to_cryptography()
                verdict.reason = self._check(leaf, auth)
                verdict.device, verdict.serial = device_name_of(leaf), serial_text(leaf)
            except Exception:
                logger.exception("checking a device certificate failed; refusing it")
                verdict.reason = "handshake"
            return not verdict.reason

        mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if auth.mode == "required" else 0)
        conn.set_verify(mode, verify)

    def _reread(self) -> bool:
        """A serial of this CA not in the list may be a device enrolled since the last poll:
        read the list now (one store read, in the handshake; at most every REREAD_SECONDS, so a
        burst of unknown serials cannot turn into a burst of store reads)."""
        now = time.monotonic()
        if self._store is None or now - self._reread_at < REREAD_SECONDS:
            return False
        self._reread_at = now
        self._take(read_registry(self._store))
        return True

    def _check(self, leaf: x509.Certificate, auth: _BaseAuth) -> str:
        reason = check_device_certificate(leaf, list(auth.cas))
        if reason or not auth.own_ca:
            return reason
        if time.monotonic() - self._fresh_at > STALE_SECONDS:
            return "list-unavailable"
        serial = serial_text(leaf)
        if self._registry.by_serial(serial) is None:
            self._reread()
        if serial in self._refused:
            return "revoked"
        if self._registry.by_serial(serial) is None:
            return "unknown-device"  # signed by this CA but never enrolled here (e.g. a restored backup)
        return ""

    @fail_closed
    def tls_failed_client(self, data: tls.TlsData) -> None:
        client = data.context.client
        listener = listener_of(client)
        if listener is None or listener.base.id not in self._bases:
            return
        verdict = _verdict_of(data.ssl_conn)
        if verdict is None:
            return
        reason = verdict.reason or ("no-certificate" if "did not return a certificate" in (client.error or "") else "")
        if not reason:
            return  # a handshake that failed for other reasons (versions, ciphers)
        counters[reason] += 1
        # The one line of this failure: TlsFailures (the generic handshake line) skips it.
        client.error = f"{DEVICE_REFUSED}: {reason}"
        host = client.peername[0] if client.peername else ""
        device = f" {verdict.device!r} (serial {verdict.serial})" if verdict.device else ""
        logger.warning("%s: device certificate refused on base %r: %s%s", host, listener.base.name, reason, device,
                       extra={"event": "device-refused", "base": listener.base.name, "client": host,
                              "reason": reason, "device": verdict.device or None})

    async def tls_established_client(self, data: tls.TlsData) -> None:
        verdict = _verdict_of(data.ssl_conn)
        if verdict is None or verdict.reason or not verdict.device or self._store is None:
            return
        if self._registry.by_serial(verdict.serial) is None:
            return  # a company CA's device (tls.client_ca): not in the device list
        now = time.monotonic()
        if now - self._seen_written.get(verdict.device, -SEEN_EVERY_SECONDS) < SEEN_EVERY_SECONDS:
            return
        self._seen_written[verdict.device] = now
        try:
            # Off the event loop: a slow store must not hold up other connections.
            await asyncio.to_thread(mark_seen, self._store, verdict.device, time.time())
        except Exception as e:  # only a display: never a reason to drop a device's connection
            logger.warning("recording when device %r was last seen failed (%s)", verdict.device, e)

    # --- the device as an identity -----------------------------------------------------------

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if already_answered(flow):
            return
        flow.metadata.pop(DEVICE_KEY, None)
        listener = listener_of(flow.client_conn)
        auth = self._bases.get(listener.base.id) if listener is not None else None
        if auth is None:
            return
        leaf = _leaf(flow.client_conn)
        if leaf is None:
            if auth.mode == "required":  # the handshake refused it; a second line of defence
                flow.metadata["gateway_verdict"] = "denied-device"
                deny(flow, 403, "403 Forbidden: this base admits enrolled devices only.")
            return
        # A keep-alive connection of a device revoked since its handshake stops here.
        reason = self._check(leaf, auth)
        if reason:
            counters[reason] += 1
            flow.metadata["gateway_verdict"] = "denied-device"
            flow.metadata["gateway_reason"] = f"device certificate {reason}"
            deny(flow, 403, "403 Forbidden: this device's certificate is no longer accepted.")
            return
        flow.metadata[DEVICE_KEY] = device_name_of(leaf)

    def device_of_serial(self, serial: str) -> Any:
        return self._registry.by_serial(serial)

    @property
    def registry(self) -> Registry:
        return self._registry


_active: ClientAuth | None = None


def _addon(name: str) -> Any:
    try:
        return ctx.master.addons.get(name)
    except AttributeError:  # no master (unit tests)
        return None


def device_allows(user_id: str, device: str | None) -> bool:
    """May this user log in from this connection's device? Users bound to devices
    (``gateway device add NAME --user USER``) only from one of theirs; everyone else from anywhere."""
    if _active is None:
        return True
    bound = _active.registry.device_names_of(user_id)
    return not bound or device in bound


def _verdict_of(conn: Any) -> _Verdict | None:
    try:
        data = conn.get_app_data() if conn is not None else None
    except Exception:
        return None
    return data if isinstance(data, _Verdict) else None


def _leaf(client: connection.Client) -> x509.Certificate | None:
    certificates = getattr(client, "certificate_list", None) or []
    return certificates[0].to_cryptography() if certificates else None
