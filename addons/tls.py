"""Serves each base's certificate under the gateway's TLS policy, and swaps certificates
when their files change, without a restart.

Must sit before any other addon that answers ``tls_start_client`` (mitmproxy's TlsConfig
returns early when ``ssl_conn`` is already set). One pyOpenSSL context per certificate is built
in ``apply_config`` or by the file watcher; a handshake only creates a Connection from it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass

from OpenSSL import SSL

from addons._background import BackgroundTask
from addons._context import listener_of
from addons._guard import fail_closed
from addons.autocert import alpn_challenge_context, offers_acme_tls
from gateway.autocert.manager import acme_bases, ensure_placeholder
from gateway.certs.authority import certs_folder
from gateway.certs.context import dh_params_file, server_context
from gateway.certs.load import CertError, format_date
from gateway.certs.sources import CertSource, Stamp, ensure_default_certificate, load_source, load_twin, source_for
from gateway.config import GatewayConfig, Listener
from mitmproxy import tls
from mitmproxy import ctx

logger = logging.getLogger("gateway.tls")

# How often certificate files are checked; a replaced certificate serves within about this.
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class _Served:
    context: SSL.Context
    stamp: Stamp
    # A changed stamp that failed once: retried silently once, since a copy may still be
    # half-way (new key written, certificate not yet); logged when it fails again.
    failed_once: Stamp | None = None
    failed_logged: Stamp | None = None


@dataclass(frozen=True)
class _Policy:
    min_version: str
    http2: bool


class GatewayTls:
    def __init__(self) -> None:
        self._served: dict[CertSource, _Served] = {}
        self._by_base: dict[str, CertSource] = {}
        self._policy: _Policy | None = None
        self._dh_file = None
        self._watcher = BackgroundTask(self._watch)
        self._state_dir = None

    # --- configuration -----------------------------------------------------------------------

    def apply_config(self, cfg: GatewayConfig) -> None:
        """Build every context first; a broken certificate raises and refuses the config."""
        ensure_default_certificate(cfg)
        for base in acme_bases(cfg):
            ensure_placeholder(cfg, base)  # served until the CA's certificate arrives
        policy = _Policy(cfg.tls.min_version, cfg.tls.http2)
        dh_file = dh_params_file(certs_folder(cfg.state_dir))
        by_base = {base.id: source_for(cfg, base) for base in cfg.bases}
        keys = {source: key for key, source in _config_keys(cfg, by_base)}
        served: dict[CertSource, _Served] = {}
        for source in set(by_base.values()):
            old = self._served.get(source)
            stamp = source.stamp()
            if old is not None and old.stamp == stamp and policy == self._policy:
                served[source] = old
                continue
            try:
                served[source] = _Served(self._build(source, policy, dh_file), stamp)
            except CertError as e:
                raise CertError(f"{keys.get(source, 'tls.cert')}: {e}{_fix_for(str(e))}") from None
        self._served, self._by_base, self._policy, self._dh_file = served, by_base, policy, dh_file
        self._state_dir = cfg.state_dir if cfg.acme.enabled else None

    @staticmethod
    def _build(source: CertSource, policy: _Policy, dh_file: object) -> SSL.Context:
        bundle = load_source(source)
        try:
            return server_context(bundle, min_version=policy.min_version, http2=policy.http2,
                                  dh_file=dh_file, twin=load_twin(source, bundle))  # type: ignore[arg-type]
        except SSL.Error as e:
            raise CertError(f"{source.cert}: OpenSSL refused this certificate or key ({_ssl_reason(e)})") from None

    # --- handshakes --------------------------------------------------------------------------

    def context_for(self, listener: Listener) -> SSL.Context | None:
        source = self._by_base.get(listener.base.id)
        served = self._served.get(source) if source is not None else None
        return served.context if served is not None else None

    @fail_closed
    def tls_start_client(self, tls_start: tls.TlsData) -> None:
        if tls_start.ssl_conn is not None:
            return
        client = tls_start.context.client
        listener = listener_of(client)
        context = self.context_for(listener) if listener is not None else None
        if self._state_dir is not None and offers_acme_tls(client.alpn_offers):
            # The CA validating TLS-ALPN-01: its challenge certificate, when an order placed one.
            context = alpn_challenge_context(self._state_dir, client.sni, _acme_store()) or context
        if context is None:
            # No ssl_conn: the proxy core then drops the connection. Fail closed.
            client.error = "refused: this port is not configured for TLS"
            return
        # The listener alone picks the certificate (ports are unique per base), so a client
        # without SNI — a terminal connecting by bare IP — gets the same one.
        conn = SSL.Connection(context)
        conn.set_accept_state()
        tls_start.ssl_conn = conn

    # --- hot swap ----------------------------------------------------------------------------

    def running(self) -> None:
        self._watcher.start()

    def done(self) -> None:
        self._watcher.stop()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                self.check_files()
            except Exception:
                logger.exception("certificate file check failed; the current certificates keep serving")

    def check_files(self, now: datetime.datetime | None = None) -> None:
        """Rebuild the context of every certificate whose files changed; keep the old one when
        the new files are broken."""
        if self._policy is None:
            return
        updated = dict(self._served)
        for source, served in self._served.items():
            stamp = source.stamp()
            if stamp == served.stamp or stamp == served.failed_logged:
                continue
            try:
                bundle = load_source(source, now)
                context = server_context(bundle, min_version=self._policy.min_version,
                                         http2=self._policy.http2, dh_file=self._dh_file,
                                         twin=load_twin(source, bundle, now))
            except (CertError, SSL.Error, OSError) as e:
                problem = str(e) if isinstance(e, CertError) else f"{source.cert}: {_ssl_reason(e)}"
                if served.failed_once != stamp:
                    updated[source] = _Served(served.context, served.stamp, failed_once=stamp,
                                              failed_logged=served.failed_logged)
                    continue
                logger.error("new certificate refused, the previous one keeps serving: %s", problem)
                updated[source] = _Served(served.context, served.stamp, failed_logged=stamp)
                continue
            updated[source] = _Served(context, stamp)
            logger.info("certificate %s replaced; new connections get it (expires %s)",
                        source.cert, format_date(bundle.leaf.not_valid_after_utc))
        self._served = updated


def _acme_store() -> object:
    """The store AutoCert keeps open (challenge answers placed by another machine)."""
    try:
        return getattr(ctx.master.addons.get("autocert"), "store", None)
    except AttributeError:
        return None


def _config_keys(cfg: GatewayConfig, by_base: dict[str, CertSource]) -> list[tuple[str, CertSource]]:
    """Which configuration key names each certificate, for error messages (the default last, so
    a base's own key wins when it names the same files)."""
    named = [(f"bases[{i}].tls.cert", by_base[b.id]) for i, b in enumerate(cfg.bases) if b.tls and b.tls.cert]
    return [("tls.cert", by_base[b.id]) for b in cfg.bases if not (b.tls and b.tls.cert)] + named


def _fix_for(problem: str) -> str:
    if problem.endswith("file missing"):
        return " — put the certificate there, or remove tls.cert and tls.key to have the gateway generate one"
    return ""


def _ssl_reason(error: Exception) -> str:
    args = getattr(error, "args", ())
    if args and isinstance(args[0], list) and args[0] and isinstance(args[0][0], tuple):
        return "; ".join(str(item[-1]) for item in args[0])
    return type(error).__name__
