"""The local certificate authority for test labs, and the server certificates it signs.

A device trusts the small local CA once; the server certificate can then be renewed (new
names, new dates) without touching any device. This replaces the seed's
``New-SelfSignedCertificate -DnsName localhost`` + certmgr.msc routine.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.certs.install import write_private_key, write_public
from gateway.certs.load import CertBundle, CertError, load_bundle

logger = logging.getLogger("gateway.tls")

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"
SERVER_CERT_NAME = "server.pem"
SERVER_KEY_NAME = "server.key"
# The ECDSA P-256 twin of server.pem (same names, same CA, same end date), served from the same
# TLS context: signing a handshake with P-256 costs a fraction of RSA-2048 (issue 22), and
# OpenSSL hands it to every client that offers ECDSA (Android 5+, Windows 7+, Java 7+, curl,
# browsers). server.pem stays RSA for terminals that cannot do ECDSA (Windows CE browsers).
ECDSA_CERT_NAME = "server-ecdsa.pem"
ECDSA_KEY_NAME = "server-ecdsa.key"
# The CA stays RSA 2048: devices already trust it, and every client verifies RSA signatures.
RSA_KEY_BITS = 2048
CA_DAYS = 10 * 365
# Apple platforms refuse server certificates valid for more than 825 days even from a private
# CA; 365 days also fits the public-CA limit and Mozilla's profile (at most 366 days), so one
# number works everywhere.
DEFAULT_SERVER_DAYS = 365
# Renew the generated server certificate at start when this close to expiry.
RENEW_BEFORE_DAYS = 30
# Clocks on terminals drift; a certificate that starts "now" is "not yet valid" on a device a
# few minutes behind.
BACKDATE = datetime.timedelta(hours=1)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class LocalCa:
    cert_file: Path
    key_file: Path
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey


ServerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)


def _new_ecdsa_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _serial() -> int:
    return x509.random_serial_number()


def create_ca(folder: Path, *, common_name: str | None = None, now: datetime.datetime | None = None) -> LocalCa:
    """Create the local CA key (owner-only) and self-signed CA certificate in ``folder``."""
    now = now or now_utc()
    key = _new_key()
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"Gateway local CA ({socket.gethostname()})"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TLS gateway test lab"),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        # path_length=0: this CA signs server certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / CA_CERT_NAME, folder / CA_KEY_NAME
    write_private_key(key_file, key)
    write_public(cert_file, certificate.public_bytes(serialization.Encoding.PEM))
    return LocalCa(cert_file, key_file, certificate, key)


def load_ca(folder: Path) -> LocalCa | None:
    """The CA in ``folder``, or None when there is none yet. A half-present CA is an error."""
    cert_file, key_file = folder / CA_CERT_NAME, folder / CA_KEY_NAME
    if not cert_file.exists() and not key_file.exists():
        return None
    bundle = load_bundle(cert_file, key_file)
    if not isinstance(bundle.key, rsa.RSAPrivateKey):
        raise CertError(f"{key_file}: the local CA key must be an RSA key")
    return LocalCa(cert_file, key_file, bundle.leaf, bundle.key)


def load_or_create_ca(folder: Path) -> tuple[LocalCa, bool]:
    """The existing CA (kept, so devices keep trusting it) or a new one; True when created."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = load_ca(folder)
    if existing is not None:
        return existing, False
    return create_ca(folder), True


def issue_server_certificate(
    ca: LocalCa,
    names: list[str],
    ips: list[IpAddress],
    *,
    days: int = DEFAULT_SERVER_DAYS,
    now: datetime.datetime | None = None,
    ecdsa: bool = False,
    not_after: datetime.datetime | None = None,
) -> tuple[x509.Certificate, ServerKey]:
    """A leaf for ``names`` and ``ips``, signed by the local CA (an RSA key, or P-256 with
    ``ecdsa``; ``not_after`` instead of ``days`` gives an exact end date)."""
    if not names and not ips:
        raise CertError("a certificate needs at least one name (--name) or IP address (--ip)")
    if days < 1:
        raise CertError(f"--days must be at least 1, got {days}")
    now = now or now_utc()
    key: ServerKey = _new_ecdsa_key() if ecdsa else _new_key()
    end = not_after or now + datetime.timedelta(days=days)
    common_name = names[0] if names else str(ips[0])
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names += [x509.IPAddress(ip) for ip in ips]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(end, ca.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            # RSA key exchange (TLS 1.2 without ECDHE) encrypts to the key; an EC key only signs.
            digital_signature=True, content_commitment=False, key_encipherment=not ecdsa,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Browsers ignore the CN; the names and IPs live in subjectAltName.
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return certificate, key


def write_server_certificate(
    folder: Path, ca: LocalCa, certificate: x509.Certificate, key: ServerKey,
) -> tuple[Path, Path]:
    """server.pem (leaf then CA, so clients get the whole chain) and server.key (0600); for an
    EC key server-ecdsa.pem and server-ecdsa.key."""
    names = (ECDSA_CERT_NAME, ECDSA_KEY_NAME) if isinstance(key, ec.EllipticCurvePrivateKey) \
        else (SERVER_CERT_NAME, SERVER_KEY_NAME)
    cert_file, key_file = folder / names[0], folder / names[1]
    chain = certificate.public_bytes(serialization.Encoding.PEM) + ca.certificate.public_bytes(serialization.Encoding.PEM)
    # Key first: a watcher that sees the new certificate must also find its key.
    write_private_key(key_file, key)
    write_public(cert_file, chain)
    return cert_file, key_file


def default_names(listen_host: str | None = None, hosts: tuple[str, ...] = ()) -> tuple[list[str], list[IpAddress]]:
    """localhost, this machine's names, loopback and this machine's own addresses, and the
    names devices use (``tls.hosts``)."""
    names = ["localhost"]
    ips: list[IpAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    hostname = socket.gethostname()
    for candidate in (hostname, _fqdn(hostname)):
        if candidate and candidate not in names and not _is_ip(candidate):
            names.append(candidate)
    for ip in _own_addresses(hostname):
        if ip not in ips:
            ips.append(ip)
    if listen_host and _is_ip(listen_host):
        ip = ipaddress.ip_address(listen_host)
        if not ip.is_unspecified and ip not in ips:
            ips.append(ip)
    for host in hosts:
        if _is_ip(host):
            if ipaddress.ip_address(host) not in ips:
                ips.append(ipaddress.ip_address(host))
        elif host.lower() not in (n.lower() for n in names):
            names.append(host)
    return names, ips


def _fqdn(hostname: str) -> str:
    try:
        return socket.getfqdn(hostname)
    except OSError:
        return ""


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _own_addresses(hostname: str) -> list[IpAddress]:
    found: list[IpAddress] = []
    try:
        infos = socket.getaddrinfo(hostname, None)
    except OSError:
        infos = []
    candidates = [info[4][0] for info in infos]
    # A UDP "connect" only asks the routing table which local address would be used; no packet
    # is sent. It finds the LAN address when the host name resolves to loopback only.
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                candidates.append(s.getsockname()[0])
        except OSError:
            pass
    for text in candidates:
        try:
            ip = ipaddress.ip_address(str(text).split("%")[0])
        except ValueError:
            continue
        if ip.is_unspecified or ip.is_link_local or ip in found:
            continue
        found.append(ip)
    return found


def _needs_new_server_certificate(cert_file: Path, key_file: Path, ca: LocalCa, now: datetime.datetime) -> bool:
    if not cert_file.exists() or not key_file.exists():
        return True
    try:
        bundle = load_bundle(cert_file, key_file)
    except CertError:
        return True
    if bundle.leaf.issuer != ca.certificate.subject:
        return True
    return bundle.leaf.not_valid_after_utc - now < datetime.timedelta(days=RENEW_BEFORE_DAYS)


def ensure_local_server_certificate(
    folder: Path, listen_host: str | None = None, *, now: datetime.datetime | None = None,
    hosts: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    """The generated server certificate in ``folder``, created (or renewed near expiry) once."""
    now = now or now_utc()
    ca, created = load_or_create_ca(folder)
    if created:
        logger.info("created a local CA: %s — install this file on devices once (see `gateway cert show %s`)",
                    ca.cert_file, ca.cert_file)
    cert_file, key_file = folder / SERVER_CERT_NAME, folder / SERVER_KEY_NAME
    if _needs_new_server_certificate(cert_file, key_file, ca, now):
        names, ips = default_names(listen_host, hosts)
        certificate, key = issue_server_certificate(ca, names, ips, now=now)
        write_server_certificate(folder, ca, certificate, key)
        logger.info("created a server certificate %s for %s", cert_file,
                    ", ".join(names + [str(ip) for ip in ips]))
    ensure_ecdsa_twin(folder, ca, now=now)
    return cert_file, key_file


def ensure_ecdsa_twin(folder: Path, ca: LocalCa, *, now: datetime.datetime | None = None) -> bool:
    """server-ecdsa.pem/.key made to match server.pem: the same names, CA and end date. Made
    again whenever server.pem changed (renewed, or re-made by ``gateway cert self-signed``);
    True when written. A state folder from before issue 22 gets its twin at the next start;
    server.pem itself, which devices may have pinned, is left as it is."""
    try:
        rsa_bundle = load_bundle(folder / SERVER_CERT_NAME, folder / SERVER_KEY_NAME)
    except CertError:
        return False
    if _twin_matches(folder, rsa_bundle, ca):
        return False
    rsa_leaf = rsa_bundle.leaf
    dns, ips = _alt_names(rsa_leaf)
    if not dns and not ips:
        return False
    certificate, key = issue_server_certificate(ca, dns, ips, now=now or now_utc(), ecdsa=True,
                                                not_after=rsa_leaf.not_valid_after_utc)
    write_server_certificate(folder, ca, certificate, key)
    logger.info("created the ECDSA server certificate %s beside %s (the same names)",
                folder / ECDSA_CERT_NAME, folder / SERVER_CERT_NAME)
    return True


def _alt_names(leaf: x509.Certificate) -> tuple[list[str], list[IpAddress]]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return list(san.get_values_for_type(x509.DNSName)), list(san.get_values_for_type(x509.IPAddress))


def _twin_matches(folder: Path, rsa_bundle: CertBundle, ca: LocalCa) -> bool:
    try:
        twin = load_bundle(folder / ECDSA_CERT_NAME, folder / ECDSA_KEY_NAME)
    except CertError:
        return False
    # The whole chain, not the issuer's name: a CA made again with --new-ca has the same name.
    return (isinstance(twin.leaf.public_key(), ec.EllipticCurvePublicKey)
            and twin.chain[1:] == rsa_bundle.chain[1:] == (ca.certificate,)
            and _alt_names(twin.leaf) == _alt_names(rsa_bundle.leaf)
            and twin.leaf.not_valid_after_utc == rsa_bundle.leaf.not_valid_after_utc)


def certs_folder(state_dir: Path) -> Path:
    return state_dir / "certs"
