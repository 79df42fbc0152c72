"""The ``acme:`` section and each base's ``tls.acme`` list.

Names that no public CA will certify (private and loopback addresses, LAN-only host names) are
refused here, when the configuration is read, so nothing is ever sent to the CA about them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

from gateway.config.reader import ConfigError, _Reader


LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
# Host-name endings that only mean something on a LAN (RFC 6762, 6761, 8375 and common habits).
LAN_SUFFIXES = (".local", ".lan", ".internal", ".localhost", ".home.arpa", ".localdomain", ".corp", ".home")
# Addresses only a LAN reaches (RFC 1918, carrier-grade NAT, link-local, unique-local). The
# documentation ranges (203.0.113.0/24 …) are not listed: examples use them as public addresses.
LAN_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "0.0.0.0/8",
    "fc00::/7", "fe80::/10"))
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
LAN_ADVICE = ("devices on the LAN should use the gateway's local CA instead (gateway cert self-signed and the "
              "enrolment page); set acme.allow_private: true only when acme.directory is a private ACME CA")


@dataclass(frozen=True)
class AcmeSettings:
    enabled: bool = False
    directory: str = LETS_ENCRYPT
    email: str = ""
    challenge_listen: int = 80
    profile: str = ""
    ca_bundle: Path | None = None
    allow_private: bool = False
    # The port the CA connects to for TLS-ALPN-01 is always 443; a base reached there through
    # a port forward (router 443 → base port 10560) names its own port here.
    tls_alpn_port: int = 443


def parse_acme(r: _Reader, base_dir: Path) -> AcmeSettings:
    directory = r.get("directory", str, LETS_ENCRYPT).strip()
    parts = urlsplit(directory)
    if parts.scheme != "https" or not parts.hostname:
        raise r.fail("directory", f"{directory!r} is not an ACME directory address; ACME needs https://, "
                                  f"e.g. {LETS_ENCRYPT}")
    email = r.get("email", str, "").strip()
    if email and ("@" not in email or " " in email):
        raise r.fail("email", f"{email!r} is not an e-mail address; give one or leave it out")
    port = r.get("challenge_listen", int, 80)
    if not 1 <= port <= 65535:
        raise r.fail("challenge_listen", f"port {port} is out of range; use 80 (what the CA connects to)")
    alpn_port = r.get("tls_alpn_port", int, 443)
    if not 1 <= alpn_port <= 65535:
        raise r.fail("tls_alpn_port", f"port {alpn_port} is out of range")
    bundle_raw = r.get("ca_bundle", str, "").strip()
    bundle = (base_dir / Path(bundle_raw).expanduser()).resolve() if bundle_raw else None
    return AcmeSettings(
        enabled=r.get("enabled", bool, False), directory=directory, email=email, challenge_listen=port,
        profile=r.get("profile", str, "").strip(), ca_bundle=bundle,
        allow_private=r.get("allow_private", bool, False), tls_alpn_port=alpn_port)


def parse_names(r: _Reader, name: str) -> tuple[str, ...]:
    """A base's ``tls.acme``: DNS names and IP addresses, checked for form only (whether they
    are public is checked against the acme section in :func:`lan_only_problem`)."""
    raw = r.get(name, list, [])
    if not raw:
        raise r.fail(name, "is empty; list the names and public IP addresses the certificate must cover")
    names: list[str] = []
    for i, item in enumerate(raw):
        key = f"{name}[{i}]"
        if not isinstance(item, str) or not item.strip():
            raise r.fail(key, "must be a DNS name or an IP address")
        text = normalise(item)
        if text is None:
            raise r.fail(key, f"{item!r} is neither a DNS name nor an IP address")
        if text not in names:
            names.append(text)
    return tuple(names)


def normalise(item: str) -> str | None:
    text = item.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.split(".")
    if text.startswith("*."):
        labels = labels[1:]  # wildcards need DNS-01, refused in lan_only_problem's caller
    if not all(_LABEL.match(label) for label in labels):
        return None
    return text


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def split_names(names: Iterable[str]) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """A certificate's names apart by SAN type: (DNS names, IP addresses)."""
    names = list(names)
    return [n for n in names if not is_ip(n)], [ipaddress.ip_address(n) for n in names if is_ip(n)]


def lan_only_problem(name: str) -> str | None:
    """Why a public CA will not certify ``name``, or None."""
    if is_ip(name):
        ip = ipaddress.ip_address(name)
        if ip.is_loopback:
            return f"{name} is a loopback address"
        if ip.is_unspecified or ip.is_multicast or any(ip in net for net in LAN_NETWORKS if net.version == ip.version):
            return f"{name} is a private (LAN) address"
        return None
    if name == "localhost" or "." not in name:
        return f"{name} is a LAN-only host name (no domain)"
    if name.endswith(LAN_SUFFIXES):
        return f"{name} is a LAN-only host name"
    return None


def check_base_names(names: tuple[str, ...], settings: AcmeSettings) -> tuple[int, str] | None:
    """(index, problem) of the first name the configured CA will not certify."""
    for index, name in enumerate(names):
        if name.startswith("*."):
            return index, (f"{name}: wildcard certificates need the DNS-01 challenge, which the gateway does not "
                           "do; list each name")
        if not settings.allow_private:
            problem = lan_only_problem(name)
            if problem:
                return index, f"{problem}: a public CA will not certify it; {LAN_ADVICE}"
    return None


def validate(source: Any, bases: Any, settings: AcmeSettings) -> None:
    """Raise ConfigError for the first base whose tls.acme cannot work with ``settings``."""
    for index, base in enumerate(bases):
        names = base.tls.acme if base.tls is not None else ()
        if not names:
            continue
        if not settings.enabled:
            raise ConfigError(source, f"bases[{index}].tls.acme",
                              "needs the acme section turned on (acme: {enabled: true}), or remove tls.acme")
        found = check_base_names(names, settings)
        if found:
            raise ConfigError(source, f"bases[{index}].tls.acme[{found[0]}]", found[1])
