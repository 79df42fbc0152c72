"""Can the legacy server be reached around the gateway?

A back end that also listens on a LAN address lets any device on the LAN skip every check of the
gateway (IP lists, throttling, users) by using the back end's own port. ``gateway check`` warns,
naming the address and how to close it. Learned from the OS's socket tables (no traffic is sent);
a back end on another machine is reachable over the network by definition.
"""

from __future__ import annotations

from gateway.config import GatewayConfig, Listener
from gateway.ops.portowner import listen_addresses
from gateway.utils.net import is_loopback

HOW_TO_CLOSE = ("bind the legacy server to 127.0.0.1 in its own settings (see docs/guides/windows.md), or block "
                "port {port} for everyone but this machine in the firewall")


def bypass_warning(listener: Listener) -> str | None:
    endpoint = listener.endpoint
    host, port = endpoint.backend_host, endpoint.backend_port
    how = HOW_TO_CLOSE.format(port=port)
    if not is_loopback(host):
        return (f"back end {endpoint.backend} is reached over the network: devices that can reach {host}:{port} "
                f"bypass the gateway; run the gateway on that machine and {how}")
    addresses = listen_addresses(port)
    if not addresses:
        return None
    open_on = [a for a in addresses if not is_loopback(a)]
    if not open_on:
        return None
    shown = ", ".join(f"{'every address' if a in ('0.0.0.0', '::') else a} ({a}:{port})" for a in open_on)
    return (f"back end port {port} also accepts connections on {shown}: the LAN can reach the legacy server "
            f"around the gateway; {how}")


def bypass_warnings(cfg: GatewayConfig) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    seen: set[tuple[str, int]] = set()
    for listener in cfg.listeners():
        key = (listener.endpoint.backend_host, listener.endpoint.backend_port)
        if key in seen:
            continue
        seen.add(key)
        warning = bypass_warning(listener)
        if warning:
            where = "" if listener.role == "data" else "print "
            found.setdefault(listener.base.id, []).append(where + warning)
    return found
