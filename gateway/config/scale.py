"""Configuration of the scale-out features: ``workers`` and ``proxy_protocol``.

``workers: auto | N`` — how many worker processes share the base ports (SO_REUSEPORT).
``proxy_protocol: {enabled: true, trusted: [10.0.0.5, 10.0.1.0/24]}`` — at the top level for
every base port, or under ``bases[i].data`` / ``bases[i].print`` for one listener (the listener's
own setting wins). Kept out of gateway/config/__init__.py so that file only gains one line per key.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

from gateway.config.reader import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ProxyProtocolSettings:
    enabled: bool = False
    trusted: tuple[Network, ...] = ()

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.trusted)


def parse_proxy_protocol(reader: Any) -> ProxyProtocolSettings:
    """``reader`` is gateway.config's _Reader for the ``proxy_protocol`` mapping."""
    enabled = reader.get("enabled", bool, False)
    items = reader.get("trusted", list, [])
    trusted = []
    for index, item in enumerate(items):
        try:
            trusted.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise ConfigError(reader.source, f"{reader.key('trusted')}[{index}]",
                              f"{item!r} is not an address or network; write e.g. 10.0.0.5 or 10.0.1.0/24") from None
    if enabled and not trusted:
        raise reader.fail("trusted", "is empty while proxy_protocol is enabled; list the balancer's addresses "
                                     "(e.g. [10.0.0.5]) — a header from anyone else is never believed")
    reader.finish()
    return ProxyProtocolSettings(enabled=enabled, trusted=tuple(trusted))


def optional_proxy_protocol(reader: Any) -> ProxyProtocolSettings | None:
    """The ``proxy_protocol`` key of one listener, or None to follow the top-level setting."""
    if "proxy_protocol" not in reader.data:
        reader.used.add("proxy_protocol")
        return None
    return parse_proxy_protocol(reader.sub("proxy_protocol"))


def parse_workers(reader: Any) -> int | str:
    value = reader.get("workers", (str, int), "auto")
    if isinstance(value, str):
        if value.strip().lower() != "auto":
            raise reader.fail("workers", f"{value!r} is not a worker count; write auto or a number like 2")
        return "auto"
    if not 1 <= value <= 256:
        raise reader.fail("workers", f"{value} workers is out of range; use auto or 1–256")
    return value


def can_share_ports() -> bool:
    """Several processes can listen on one port and the kernel spreads connections over them:
    SO_REUSEPORT on Linux. (BSD and macOS accept the option but do not balance; Windows has no
    equivalent.)"""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def resolve_workers(setting: int | str) -> tuple[int, str | None]:
    """The number of workers to start and, when it differs from what was asked, why."""
    if not can_share_ports():
        asked = (os.cpu_count() or 1) if setting == "auto" else int(setting)
        if asked == 1:
            return 1, None
        return 1, (f"workers: {setting} asked, running 1 worker: this system ({sys.platform}) cannot share "
                   "a listening port between processes (SO_REUSEPORT with load balancing is Linux-only)")
    if setting == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1), None
    return int(setting), None
