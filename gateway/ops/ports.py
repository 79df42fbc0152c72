"""Is a port free? Asked before the gateway starts listening, so a clash names the base.

mitmproxy logs a bind failure as a bare OSError; asking first lets the gateway say which base
and which port, and refuse a reload before half of it has been applied.
"""

from __future__ import annotations

import errno
import socket
import sys

from gateway.config import GatewayConfig, Listener
from gateway.ops import portowner


def _bind_probe(family: int, host: str, port: int, reuse_port: bool = False) -> None:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuse_port:
            # A worker joining its siblings' SO_REUSEPORT sockets: only those let this bind succeed.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sys.platform == "win32":
            # Windows' SO_REUSEADDR would let us share a port another program holds.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
        else:
            # asyncio listens with SO_REUSEADDR too; without it TIME_WAIT leftovers would look "taken".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("", "::"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(1)
    finally:
        sock.close()


def port_problem(host: str, port: int, reuse_port: bool = False) -> str | None:
    """None when the port can be listened on, else the reason in words."""
    try:
        if host in ("", "0.0.0.0", "::") and socket.has_ipv6:
            try:
                _bind_probe(socket.AF_INET6, "", port, reuse_port)
            except OSError as e:
                if e.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    _bind_probe(socket.AF_INET, "0.0.0.0", port, reuse_port)
                else:
                    raise
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            _bind_probe(family, host, port, reuse_port)
    except PermissionError:
        return f"port {port} needs administrator rights (ports below 1024); choose a port above 1024"
    except OSError as e:
        if e.errno == errno.EADDRINUSE or getattr(e, "winerror", None) == 10048:
            owner = portowner.owner_of(port)
            return f"port {port} is taken by another program" + (f": {portowner.describe(owner)}" if owner else "")
        if e.errno == errno.EADDRNOTAVAIL:
            return f"address {host} is not an address of this machine"
        return f"port {port} cannot be opened: {e.strerror or e}"
    return None


def describe(listener: Listener) -> str:
    return f"base {listener.base.name!r} ({listener.role} port {listener.port})"


def busy_listeners(cfg: GatewayConfig, host: str, skip_ports: set[int], reuse_port: bool = False) -> list[str]:
    """One message per listener of cfg whose port cannot be opened (ports in skip_ports are ours already)."""
    problems = []
    for listener in cfg.listeners():
        if listener.port in skip_ports:
            continue
        problem = port_problem(host, listener.port, reuse_port)
        if problem:
            problems.append(f"{describe(listener)}: {problem}")
    return problems
