"""The "SSL settings" view of a certificate, its warnings, and the problems `gateway check`
reports. Pure functions: a clock can be passed in."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from gateway.certs.authority import default_names, now_utc
from gateway.certs.load import CertError, check_dates, format_date, load_certificates, read_file
from gateway.certs.sources import CertSource, base_source, default_source, load_source, local_ca_file
from gateway.config import BaseConfig, GatewayConfig

EXPIRY_WARNING_DAYS = 30
UNSPECIFIED_HOSTS = ("", "0.0.0.0", "::")


@dataclass(frozen=True)
class CertificateView:
    subject: str
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    days_left: int
    dns_names: tuple[str, ...]
    ips: tuple[str, ...]
    sha256: str
    kind: str  # "self-signed", "local CA", "CA-signed"
    chain_length: int
    key: str = ""  # "RSA 2048", "ECDSA secp256r1", …

    @property
    def private(self) -> bool:
        """True when only devices told to trust it will (not a public CA)."""
        return self.kind in ("self-signed", "local CA")


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def names_of(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def is_self_signed(certificate: x509.Certificate) -> bool:
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except Exception:  # InvalidSignature, or a key type that cannot sign
        return False
    return True


def issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except Exception:
        return False
    return True


def describe(chain: list[x509.Certificate], local_ca: x509.Certificate | None = None,
             now: datetime.datetime | None = None) -> CertificateView:
    now = now or now_utc()
    leaf = chain[0]
    dns, ips = names_of(leaf)
    if is_self_signed(leaf):
        kind = "self-signed"
    elif local_ca is not None and issued_by(leaf, local_ca):
        kind = "local CA"
    else:
        kind = "CA-signed"
    return CertificateView(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        days_left=(leaf.not_valid_after_utc - now).days,
        dns_names=tuple(dns),
        ips=tuple(ips),
        sha256=fingerprint(leaf),
        kind=kind,
        chain_length=len(chain),
        key=key_description(leaf),
    )


def key_description(certificate: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    return type(key).__name__.removeprefix("_").replace("PublicKey", "")


def key_profile_problem(key: str) -> str | None:
    """Mozilla "intermediate": RSA of at least 2048 bits, or ECDSA on P-256 or P-384."""
    if not key:
        return None
    kind, _, size = key.partition(" ")
    if kind == "RSA" and size.isdigit() and int(size) >= 2048:
        return None
    if kind == "ECDSA" and size in ("secp256r1", "secp384r1"):
        return None
    return (f"key {key} is outside the Mozilla intermediate TLS profile (RSA 2048+ or ECDSA P-256/P-384): "
            "some clients refuse it; request the certificate with such a key (gateway cert request makes RSA 2048)")


def covers(view: CertificateView, host: str) -> bool:
    """Does the certificate name ``host`` (a DNS name or IP) the way clients check it?"""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return any(_dns_match(pattern, host) for pattern in view.dns_names)
    return any(ipaddress.ip_address(text) == ip for text in view.ips)


def _dns_match(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        # A wildcard stands for exactly one left-most label (RFC 6125 6.4.3).
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def configured_hosts(cfg: GatewayConfig) -> list[str]:
    """The names and addresses devices use to reach the gateway, as far as the config says."""
    hosts = list(cfg.tls.hosts)
    if cfg.listen_host not in UNSPECIFIED_HOSTS and cfg.listen_host not in hosts:
        hosts.append(cfg.listen_host)
    return hosts


def public_addresses(cfg: GatewayConfig) -> list[str]:
    """Addresses the gateway listens on that are reachable from the internet."""
    if cfg.listen_host in UNSPECIFIED_HOSTS:
        candidates = [str(ip) for ip in default_names()[1]]
    elif cfg.listen_host == "localhost":
        candidates = []
    else:
        candidates = [cfg.listen_host]
    return [c for c in candidates if ipaddress.ip_address(c).is_global]


def warnings_for(view: CertificateView, cfg: GatewayConfig | None, uses: list[str] | None = None,
                 now: datetime.datetime | None = None) -> list[str]:
    """What the person should fix or know. ``uses``: names of the bases serving it."""
    now = now or now_utc()
    found: list[str] = []
    if now > view.not_after:
        found.append(f"expired on {format_date(view.not_after)}: clients refuse it; renew it")
    elif now < view.not_before:
        found.append(f"not yet valid (from {format_date(view.not_before)}); check the clock")
    elif (days_left := (view.not_after - now).days) < EXPIRY_WARNING_DAYS:
        found.append(f"expires within {EXPIRY_WARNING_DAYS} days ({days_left} days left, "
                     f"{format_date(view.not_after)}); renew it now")
    key_problem = key_profile_problem(view.key)
    if key_problem:
        found.append(key_problem)
    if cfg is None:
        return found
    for host in configured_hosts(cfg):
        if not covers(view, host):
            found.append(f"does not cover {host}: devices connecting to {host} will refuse it; "
                         "get a certificate that names it")
    public = public_addresses(cfg)
    if view.private and public and (uses is None or uses):
        found.append(f"the gateway listens on the public address {', '.join(public)} with a "
                     f"{view.kind} certificate: devices on the internet cannot use it; get a certificate "
                     "from a trusted CA for this address or name (gateway cert request), or use a VPN")
    return found


def load_local_ca(cfg: GatewayConfig | None) -> x509.Certificate | None:
    if cfg is None:
        return None
    try:
        return load_certificates(local_ca_file(cfg))[0]
    except CertError:
        return None


def certificate_problems(cfg: GatewayConfig, now: datetime.datetime | None = None) -> list[tuple[str | None, str]]:
    """Problems with the certificates in force, for `gateway check`: (base id or None for the
    default certificate, one line)."""
    now = now or now_utc()
    problems: list[tuple[str | None, str]] = []
    checks: list[tuple[str | None, CertSource]] = []
    if cfg.tls.cert is not None or default_source(cfg).cert.exists():
        checks.append((None, default_source(cfg)))
    for base in cfg.bases:
        own = base_source(base)
        if own is not None:
            checks.append((base.id, own))
    for owner, source in checks:
        problems += [(owner, p) for p in source_problems(source, cfg, now)]
    return problems


def source_problems(source: CertSource, cfg: GatewayConfig, now: datetime.datetime) -> list[str]:
    for path in source.files():
        if not path.exists():
            return [f"{path}: file missing"]
    try:
        bundle = load_source(source, now)
    except CertError as e:
        return [str(e)]
    view = describe(list(bundle.chain), load_local_ca(cfg), now)
    key_problem = key_profile_problem(view.key)
    key_found = [f"{source.cert}: {key_problem}"] if key_problem else []
    missing = [host for host in configured_hosts(cfg) if not covers(view, host)]
    if missing and cfg.tls.cert is None and source.cert == default_source(cfg).cert:
        # The generated certificate: one command adds the names, keeping the ones it had.
        flags = " ".join(f"--ip {h.strip('[]')}" if _is_ip_text(h) else f"--name {h}" for h in missing)
        return [f"{source.cert}: does not cover {', '.join(missing)} — fix: "
                f"gateway -c {cfg.source} cert self-signed {flags}"] + key_found
    return [f"{source.cert}: does not cover {host}" for host in missing] + key_found


def _is_ip_text(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def render(path: Path | str, view: CertificateView, warnings: list[str]) -> str:
    kinds = {
        "self-signed": "self-signed (devices must be told to trust it)",
        "local CA": "signed by the gateway's local CA (devices must trust the local CA once)",
        "CA-signed": "signed by a certificate authority",
    }
    lines = [
        f"Certificate:   {path}",
        f"  Holder:      {view.subject}",
        f"  Issuer:      {view.issuer}",
        f"  Issued:      {format_date(view.not_before)}",
        f"  Expires:     {format_date(view.not_after)} ({view.days_left} days left)",
        f"  Names:       {', '.join(view.dns_names) or '(none)'}",
        f"  IP addresses: {', '.join(view.ips) or '(none)'}",
        f"  SHA-256:     {view.sha256}",
        f"  Type:        {kinds[view.kind]}",
        f"  Chain:       {view.chain_length} certificate(s), leaf first",
    ]
    if view.key:
        lines.append(f"  Key:         {view.key}")
    lines += [f"  WARNING: {w}" for w in warnings]
    return "\n".join(lines)


def common_name(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else certificate.subject.rfc4514_string()


__all__ = ["CertificateView", "certificate_problems", "check_dates", "covers", "describe", "fingerprint",
           "read_file", "render", "warnings_for"]


def served_view(cfg: GatewayConfig, base: BaseConfig) -> CertificateView | None:
    """The certificate a base serves now, or None when it cannot be read here (its problems are
    reported by certificate_problems) or comes from ACME at run time."""
    if base.tls is not None and base.tls.acme and base.tls.cert is None:
        return None
    source = base_source(base) or default_source(cfg)
    if not all(path.exists() for path in source.files()):
        return None
    try:
        bundle = load_source(source)
    except CertError:
        return None
    return describe(list(bundle.chain), load_local_ca(cfg))


def host_for_url(cfg: GatewayConfig, base: BaseConfig, preferred: str) -> tuple[str, str | None]:
    """(host to show in the base's https:// URL, warning): ``preferred`` when the certificate
    names it, else a name it does (tls.hosts first), else ``preferred`` and why clients will refuse it."""
    view = served_view(cfg, base)
    if view is None:
        return preferred, None
    candidates = [preferred, *cfg.tls.hosts, *view.dns_names, *(f"[{ip}]" if ":" in ip else ip for ip in view.ips)]
    for host in candidates:
        if host and "*" not in host and covers(view, host):
            return host, None
    return preferred, (f"the certificate served on this base names none of {preferred!r}, tls.hosts or a usable "
                       f"name ({', '.join(view.dns_names + view.ips) or 'no names at all'}): clients will "
                       "refuse https:// here; get a certificate for the name devices use")


def local_ca_served(cfg: GatewayConfig) -> bool:
    """Does any https base serve a certificate of the local CA? If none does, offering the CA to
    devices (the enrolment page) would only teach them to trust something nothing uses."""
    for base in cfg.bases:
        if base.https:
            view = served_view(cfg, base)
            if view is not None and view.kind == "local CA":
                return True
    return False
