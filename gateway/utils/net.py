"""Address facts needed by more than one layer."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1, with or without the brackets of a URL (``[::1]``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_authority(authority: str) -> tuple[str, str | None]:
    """``host[:port]`` (IPv6 in brackets) as (lower-case host without brackets, port or None)."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        return host, port or None
    if authority.count(":") == 1:
        host, _, port = authority.partition(":")
        return host, port or None
    return authority, None
