"""The configuration currently in force, and which listener a client connection belongs to.

The runner swaps the whole configuration object at once on reload, so a hook always sees one
consistent version. Ports are unique across bases, so the local port identifies the listener.
"""

from __future__ import annotations

from mitmproxy import connection, http

from gateway.config import GatewayConfig, Listener
from addons._guard import already_answered, deny

_current: GatewayConfig | None = None


def set_current_config(cfg: GatewayConfig) -> None:
    global _current
    _current = cfg


def current_config() -> GatewayConfig:
    if _current is None:
        raise RuntimeError("the gateway has no configuration applied yet")
    return _current


def listener_of(client: connection.Client) -> Listener | None:
    cfg = _current
    sockname = client.sockname
    if cfg is None or not sockname:
        return None
    # cfg.listener_for_port(port), read directly: every hook of every request asks (~16 times).
    return cfg._by_port.get(sockname[1])


def listener_to_check(flow: http.HTTPFlow) -> Listener | None:
    """The flow's listener, for a hook about to check it; None when there is nothing to check:
    an earlier hook already answered the flow, or its port is no longer configured (then the
    flow is denied here with 503)."""
    if already_answered(flow):
        return None
    listener = listener_of(flow.client_conn)
    if listener is None:
        flow.metadata["gateway_verdict"] = "gateway-error"
        deny(flow, 503, "503 Service Unavailable: this port is no longer served by the gateway.")
    return listener
