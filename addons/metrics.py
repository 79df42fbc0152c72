"""Prometheus metrics, served by the admin listener (gateway/web/admin.py) at /metrics.

Counted from flows: requests by base, status and verdict; latency; failed logins (credentials
presented and refused). Counted from connections: open connections per base, connections refused (IP lists). Counted from
log events: configuration reloads (the runner logs ``config-reloaded`` / ``config-reload-refused``).
Read when scraped: certificate expiry per certificate file, IP list sizes, active bans, backups.
Each Metrics has its own registry, so several gateways in one test process do not mix.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator

from mitmproxy import connection, http
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from addons import _engine_patches as engine
from addons._context import listener_of
from addons.accesslog import ENTRY_KEY, entry
from gateway.config import GatewayConfig
from mitmproxy import ctx
from addons.limits import TIMEOUT_KINDS, counters
from addons import client_auth, tls_failures
from gateway.certs import source_for
from gateway.certs.load import load_certificates
from addons.ipfilter import list_sizes
from gateway.auth.throttle import Throttle
from gateway.store.guarded import health as store_health
from gateway.ops.logsetup import dropped_lines

logger = logging.getLogger("gateway.metrics")

# Terminals wait on people, not milliseconds; exports of big lists take tens of seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
RELOAD_EVENTS = {"config-reloaded": "ok", "config-reload-refused": "refused"}
UNKNOWN = "?"

AddonLookup = Callable[[str], Any]


def _master_addon(name: str) -> Any:
    try:
        return ctx.master.addons.get(name)
    except AttributeError:  # no master (unit tests)
        return None


class _ReloadCounter(logging.Handler):
    def __init__(self, counter: Counter) -> None:
        super().__init__(logging.DEBUG)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        result = RELOAD_EVENTS.get(str(getattr(record, "event", "")))
        if result is not None:
            self.counter.labels(result=result).inc()


class _ScrapeTime(Collector):
    """What is read fresh at each scrape rather than counted as it happens."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._cert_cache: dict[tuple[str, int, int], float] = {}

    def collect(self) -> Iterator[Metric]:
        yield from self._certificates()
        yield from self._lists()
        yield from self._bans()
        yield from self._backups()
        yield from self._limits()
        yield from self._store()
        dropped = CounterMetricFamily("gateway_log_lines_dropped", "Log lines that could not be written "
                                      "(a full or failing log disk)")
        dropped.add_metric([], dropped_lines.total)
        yield dropped

    @staticmethod
    def _store() -> Iterator[Metric]:
        stores = store_health()
        if not stores:
            return
        up = GaugeMetricFamily("gateway_store_up", "1 while the user store answers (and writes), 0 while it is down")
        up.add_metric([], 1.0 if all(h.up for h in stores) else 0.0)
        yield up

    @staticmethod
    def _limits() -> Iterator[Metric]:
        timeouts = CounterMetricFamily("gateway_client_timeouts", "Client connections closed by a timeout, by kind",
                                       labels=["kind"])
        for kind in TIMEOUT_KINDS:
            timeouts.add_metric([kind], counters.get(f"timeout_{kind}", 0))
        yield timeouts
        refused = CounterMetricFamily("gateway_limit_refusals",
                                      "Connections and requests refused by limits, by reason", labels=["reason"])
        for reason in ("refused_connections", "refused-head", "http2-reset-flood", "body-too-large"):
            refused.add_metric([reason], counters.get(reason, 0))
        yield refused
        yield GaugeMetricFamily("gateway_request_body_buffered_bytes",
                                "Request body bytes this worker holds in memory until the body is complete",
                                value=engine.buffered_total)
        devices = CounterMetricFamily("gateway_device_refusals",
                                      "Device certificates refused (or missing) on client_auth bases, by reason",
                                      labels=["reason"])
        for reason in client_auth.REASONS:
            devices.add_metric([reason], client_auth.counters.get(reason, 0))
        yield devices
        handshakes = CounterMetricFamily("gateway_tls_handshake_failures",
                                         "Client TLS handshakes that failed, by reason", labels=["reason"])
        for reason in tls_failures.REASONS:
            handshakes.add_metric([reason], tls_failures.counters.get(reason, 0))
        yield handshakes
        yield CounterMetricFamily("gateway_request_bodies_streamed_over_budget",
                                  "Request bodies streamed to the back end because the body budget was full",
                                  value=engine.counters.get("request_buffer_full", 0))

    def _certificates(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("gateway_certificate_expiry_timestamp_seconds",
                                   "When each certificate in use expires (Unix time)", labels=["certificate"])
        cfg = self.metrics.config
        seen = set()
        for base in cfg.bases if cfg else ():
            path = source_for(cfg, base).cert
            if path in seen:
                continue
            seen.add(path)
            try:
                stat = path.stat()
                key = (str(path), stat.st_mtime_ns, stat.st_size)
                if key not in self._cert_cache:
                    self._cert_cache[key] = load_certificates(path)[0].not_valid_after_utc.timestamp()
                family.add_metric([str(path)], self._cert_cache[key])
            except Exception:  # a missing or unreadable file: `gateway check` says why
                continue
        yield family

    def _lists(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("gateway_ip_list_entries", "Entries in each IP list file in force",
                                   labels=["file"])
        for path, count in sorted(list_sizes().items()):
            family.add_metric([path], count)
        yield family

    def _bans(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("gateway_active_bans", "Addresses and accounts refused for failed logins now",
                                   labels=["kind"])
        counts = {"address": 0, "user": 0, "resets": 0}
        throttle = self._throttle()
        if throttle is not None:
            try:
                for ban in throttle.bans():
                    kind = "resets" if ban.short else ban.kind
                    counts[kind] = counts.get(kind, 0) + 1
            except Exception as e:  # the store is down: say so in the log, keep the rest of /metrics
                logger.warning("active bans unavailable for /metrics: %s", e)
        for kind, count in counts.items():
            family.add_metric([kind], count)
        yield family

    def _throttle(self) -> Any:
        auth = self.metrics.lookup("auth")
        state = getattr(auth, "_state", None)
        cfg = self.metrics.config
        if state is None or cfg is None:
            return None
        return Throttle(state.store, cfg.throttle)

    def _backups(self) -> Iterator[Metric]:
        backups = self.metrics.lookup("backups")
        saved = CounterMetricFamily("gateway_backups_saved", "Document backups written")
        failed = CounterMetricFamily("gateway_backups_failed", "Document backups that could not be written")
        saved.add_metric([], getattr(backups, "saved", 0))
        failed.add_metric([], getattr(backups, "failed", 0))
        yield saved
        yield failed


CHILDREN_CACHED = 4096


class Metrics:
    def __init__(self, lookup: AddonLookup = _master_addon) -> None:
        self.lookup = lookup
        self.config: GatewayConfig | None = None
        self.registry = CollectorRegistry()
        self.requests = Counter("gateway_requests", "Requests answered, by base, status and verdict",
                                ["base", "status", "verdict"], registry=self.registry)
        self.latency = Histogram("gateway_request_duration_seconds", "Time from request to the end of the answer",
                                 ["base"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.connections = Gauge("gateway_open_connections", "Client connections open now, by base",
                                 ["base"], registry=self.registry)
        self.refused_connections = Counter("gateway_refused_connections",
                                           "Connections refused before any request (IP lists)", ["base"],
                                           registry=self.registry)
        self.failed_logins = Counter("gateway_failed_logins", "Logins refused: wrong password, barcode or user",
                                     ["base"], registry=self.registry)
        self.reloads = Counter("gateway_config_reloads", "Configuration reloads, applied (ok) or refused",
                               ["result"], registry=self.registry)
        for result in RELOAD_EVENTS.values():
            self.reloads.labels(result=result)
        self.registry.register(_ScrapeTime(self))
        self._reload_handler = _ReloadCounter(self.reloads)
        self._open: dict[str, str] = {}
        # The labelled children a request touches, looked up once: prometheus_client's labels()
        # validates and joins the label values under a lock on every call. A child stays the
        # metric's for its whole life (nothing here removes one), so the cache is exact; it is
        # bounded only against back ends inventing status codes.
        self._request_children: dict[tuple[str, str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def apply_config(self, cfg: GatewayConfig) -> None:
        self.config = cfg

    def running(self) -> None:
        runner_log = logging.getLogger("gateway.runner")
        if self._reload_handler not in runner_log.handlers:
            runner_log.addHandler(self._reload_handler)

    def done(self) -> None:
        logging.getLogger("gateway.runner").removeHandler(self._reload_handler)

    def render(self) -> bytes:
        """The Prometheus text exposition (blocking: reads the store; call it off the event loop)."""
        return generate_latest(self.registry)

    # --- hooks ---

    def client_connected(self, client: connection.Client) -> None:
        listener = listener_of(client)
        name = listener.base.name if listener else UNKNOWN
        if client.error:  # refused by an earlier addon (IpFilter): it never carries a request
            self.refused_connections.labels(base=name).inc()
            return
        self._open[client.id] = name
        self.connections.labels(base=name).inc()

    def client_disconnected(self, client: connection.Client) -> None:
        name = self._open.pop(client.id, None)
        if name is not None:
            self.connections.labels(base=name).dec()

    def response(self, flow: http.HTTPFlow) -> None:
        self._count(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._count(flow)

    def _count(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get("gateway_counted"):
            return
        flow.metadata["gateway_counted"] = True
        # AccessLog, just before in the addon order, has worked the same facts out already.
        fields = flow.metadata.get(ENTRY_KEY) or entry(flow, time.time())
        base = fields["base"] or UNKNOWN
        status = str(fields["status"]) if fields["status"] is not None else "none"
        key = (base, status, fields["verdict"])
        counter = self._request_children.get(key)
        if counter is None:
            if len(self._request_children) >= CHILDREN_CACHED:
                self._request_children.clear()
            counter = self._request_children[key] = self.requests.labels(base=base, status=status,
                                                                          verdict=fields["verdict"])
        counter.inc()
        latency = self._latency_children.get(base)
        if latency is None:
            if len(self._latency_children) >= CHILDREN_CACHED:
                self._latency_children.clear()
            latency = self._latency_children[base] = self.latency.labels(base=base)
        latency.observe(fields["duration_ms"] / 1000)
        if fields["verdict"] == "denied-auth" and "authorization" in flow.request.headers:
            self.failed_logins.labels(base=base).inc()
