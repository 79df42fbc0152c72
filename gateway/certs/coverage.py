"""Which names a new test-lab server certificate must keep covering.

``gateway cert self-signed --name X`` used to cover X alone, dropping ``localhost`` and the
addresses the gateway listens on; every curl line of the demo then failed its handshake. The
names now add up (``--replace`` starts over), and what would stop being covered is said before
the certificate is written.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from gateway.certs.authority import SERVER_CERT_NAME, IpAddress, default_names
from gateway.certs.inspect import configured_hosts, names_of
from gateway.certs.load import CertError, load_certificates
from gateway.config import GatewayConfig


def current_names(folder: Path) -> tuple[list[str], list[IpAddress]]:
    """What the generated server certificate covers now (nothing when there is none)."""
    try:
        leaf = load_certificates(folder / SERVER_CERT_NAME)[0]
    except (CertError, OSError):
        return [], []
    dns, ips = names_of(leaf)
    return dns, [ipaddress.ip_address(ip) for ip in ips]


def planned_names(cfg: GatewayConfig, folder: Path, names: list[str], ips: list[IpAddress],
                  replace: bool) -> tuple[list[str], list[IpAddress], list[str]]:
    """(names, ips, kept): the given ones plus, unless ``replace``, those covered so far (or the
    defaults, with no certificate yet). ``kept`` lists what came from before, for the output."""
    if (names or ips) and replace:
        return names, ips, []
    before_dns, before_ips = current_names(folder)
    if not before_dns and not before_ips:
        before_dns, before_ips = default_names(cfg.listen_host, cfg.tls.hosts)
    if not names and not ips and replace:
        return before_dns, before_ips, []
    all_names = list(names) + [n for n in before_dns if n.lower() not in {x.lower() for x in names}]
    all_ips = list(ips) + [ip for ip in before_ips if ip not in ips]
    kept = [n for n in before_dns if n not in names] + [str(ip) for ip in before_ips if ip not in ips]
    return all_names, all_ips, kept


def uncovered(cfg: GatewayConfig, folder: Path, names: list[str], ips: list[IpAddress]) -> list[tuple[str, str]]:
    """(host, why it matters) for hosts the planned certificate would not cover."""
    lowered = {n.lower().rstrip(".") for n in names}

    def covered(host: str) -> bool:
        try:
            return ipaddress.ip_address(host.strip("[]")) in ips
        except ValueError:
            host = host.lower().rstrip(".")
            return host in lowered or any(n.startswith("*.") and host.partition(".")[2] == n[2:] for n in lowered)

    found: list[tuple[str, str]] = []
    for host in configured_hosts(cfg):
        why = "tls.hosts in the configuration" if host in cfg.tls.hosts else "the listen address"
        if not covered(host):
            found.append((host, why))
    before_dns, before_ips = current_names(folder)
    for host in before_dns + [str(ip) for ip in before_ips]:
        if not covered(host) and host not in {h for h, _ in found}:
            found.append((host, "covered by the current certificate"))
    return found
