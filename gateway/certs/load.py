"""Reading certificates and keys in the forms people receive them: PEM (certificate, chain,
key, in any order, in one file or two), DER and PFX/PKCS#12.

Every failure is a ``CertError`` with one line naming the file and the problem, because the
person reading it is choosing which file to send back to their certificate authority.
Never put key material or passwords into a message.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

# The DER encoding of the PKCS#7 "data" OID (1.2.840.113549.1.7.1): every PFX file carries it
# near the start; a bare DER certificate does not.
_PKCS7_DATA_OID = bytes.fromhex("06092a864886f70d010701")
_PEM_BEGIN = b"-----BEGIN "
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)


class CertError(Exception):
    """A certificate problem, phrased for the person who supplied the file."""


@dataclass(frozen=True)
class CertBundle:
    """A server certificate, its chain (leaf first) and the matching private key."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKeyTypes

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)


@dataclass(frozen=True)
class Material:
    """What one file contained."""

    certificates: list[x509.Certificate]
    key: PrivateKeyTypes | None


def read_password_file(path: Path) -> bytes:
    try:
        text = path.read_bytes()
    except OSError as e:
        raise CertError(f"{path}: cannot read the password file ({e.strerror})") from None
    # Notepad adds a BOM and CRLF; neither is part of the password.
    return text.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertError(f"{path}: file missing") from None
    except OSError as e:
        raise CertError(f"{path}: cannot be read ({e.strerror})") from None


def looks_like_pfx(data: bytes) -> bool:
    return data[:1] == b"\x30" and _PKCS7_DATA_OID in data[:64]


def parse_material(data: bytes, source: Path | str, password: bytes | None = None) -> Material:
    """Certificates and (maybe) a key from PEM, DER or PFX bytes."""
    if _PEM_BEGIN in data:
        return _parse_pem(data, source, password)
    if looks_like_pfx(data):
        return _parse_pfx(data, source, password)
    try:
        return Material([x509.load_der_x509_certificate(data)], None)
    except ValueError:
        pass
    try:
        return Material([], serialization.load_der_private_key(data, password))
    except (ValueError, TypeError):
        pass
    raise CertError(f"{source}: not a certificate (expected PEM, DER or PFX/PKCS#12)")


def _parse_pem(data: bytes, source: Path | str, password: bytes | None) -> Material:
    certificates: list[x509.Certificate] = []
    if b"CERTIFICATE-----" in data:
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise CertError(f"{source}: a certificate in this PEM file is damaged; download it again") from None
    key = None
    for match in _PEM_BLOCK.finditer(data):
        if match.group(1).endswith(b"PRIVATE KEY"):
            key = _load_pem_key(match.group(0), source, password)
    if not certificates and key is None:
        raise CertError(f"{source}: not a certificate (the PEM file has no CERTIFICATE or PRIVATE KEY block)")
    return Material(certificates, key)


def _load_pem_key(block: bytes, source: Path | str, password: bytes | None) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(block, password)
    except TypeError:
        if password is None:
            raise CertError(f"{source}: the private key is protected by a password; "
                            "give it with password_file (config) or --password-stdin") from None
        # A password for a key that has none: harmless, load it without.
        return serialization.load_pem_private_key(block, None)
    except ValueError:
        if password is not None:
            raise CertError(f"{source}: wrong password for the private key") from None
        raise CertError(f"{source}: the private key is damaged or of an unsupported type") from None


def _parse_pfx(data: bytes, source: Path | str, password: bytes | None) -> Material:
    try:
        parsed = pkcs12.load_pkcs12(data, password)
    except ValueError:
        if password is None:
            raise CertError(f"{source}: this PFX/PKCS#12 file needs its password; use --password-stdin") from None
        raise CertError(f"{source}: wrong PFX password (or a damaged file)") from None
    certificates = []
    if parsed.cert is not None:
        certificates.append(parsed.cert.certificate)
    certificates += [c.certificate for c in parsed.additional_certs]
    if not certificates:
        raise CertError(f"{source}: not a certificate (the PFX file holds no certificate)")
    return Material(certificates, parsed.key)


def public_bytes_of(key_or_cert: PrivateKeyTypes | x509.Certificate) -> bytes:
    public = key_or_cert.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[union-attr]


def key_matches(certificate: x509.Certificate, key: PrivateKeyTypes) -> bool:
    return public_bytes_of(certificate) == public_bytes_of(key)


def order_chain(certificates: list[x509.Certificate], key: PrivateKeyTypes | None = None) -> list[x509.Certificate]:
    """Leaf first, then each issuer. CAs hand out bundles in any order (often root first);
    clients need the leaf first. Certificates that are not part of the leaf's chain are dropped."""
    unique: list[x509.Certificate] = []
    for c in certificates:
        if c not in unique:
            unique.append(c)
    if not unique:
        return []
    leaf = None
    if key is not None:
        leaf = next((c for c in unique if key_matches(c, key)), None)
    if leaf is None:
        issuers = {c.issuer for c in unique if c.issuer != c.subject}
        not_issuers = [c for c in unique if c.subject not in issuers or c.issuer == c.subject and len(unique) == 1]
        leaf = not_issuers[0] if not_issuers else unique[0]
    chain = [leaf]
    while chain[-1].issuer != chain[-1].subject:
        parent = next((c for c in unique if c.subject == chain[-1].issuer and c not in chain), None)
        if parent is None:
            break
        chain.append(parent)
    return chain


def check_dates(certificate: x509.Certificate, source: Path | str, now: datetime.datetime | None = None) -> None:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now > certificate.not_valid_after_utc:
        raise CertError(f"{source}: expired on {format_date(certificate.not_valid_after_utc)}; "
                        "get a renewed certificate")
    if now < certificate.not_valid_before_utc:
        raise CertError(f"{source}: not yet valid (valid from {format_date(certificate.not_valid_before_utc)}); "
                        "check this computer's clock or wait")


def format_date(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def bundle_from(materials: list[tuple[Path | str, Material]], cert_source: Path | str) -> CertBundle:
    """Combine what the files held: certificates from all, the key from whichever had one."""
    certificates = [c for _, m in materials for c in m.certificates]
    keys = [m.key for _, m in materials if m.key is not None]
    if not certificates:
        raise CertError(f"{cert_source}: not a certificate (no certificate found)")
    if not keys:
        raise CertError(f"{cert_source}: no private key found; give the key file (--key, or tls.key in the config)")
    key = keys[-1]  # a separate key file wins over a key bundled in the certificate file
    chain = order_chain(certificates, key)
    if not key_matches(chain[0], key):
        raise CertError(f"{cert_source}: key does not match the certificate; "
                        "use the key from the request (CSR) this certificate was issued for")
    return CertBundle(tuple(chain), key)


def load_bundle(
    cert_file: Path,
    key_file: Path | None = None,
    password: bytes | None = None,
) -> CertBundle:
    """Certificate chain and matching key from files (dates not checked: see check_dates)."""
    materials = [(cert_file, parse_material(read_file(cert_file), cert_file, password))]
    if key_file is not None and key_file != cert_file:
        materials.append((key_file, parse_material(read_file(key_file), key_file, password)))
    return bundle_from(materials, cert_file)


def load_certificates(path: Path, password: bytes | None = None) -> list[x509.Certificate]:
    """Only the certificates of a file (for `cert show`); leaf first when it can be told."""
    material = parse_material(read_file(path), path, password)
    if not material.certificates:
        raise CertError(f"{path}: not a certificate (it holds only a private key)")
    return order_chain(material.certificates, material.key)
