"""The TLS-ALPN-01 challenge certificate (RFC 8737): self-signed, for the one name being
validated, with the critical acmeIdentifier extension holding SHA-256 of the key
authorization. The `acme` package no longer builds it, so `cryptography` does."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

ACME_TLS_1 = b"acme-tls/1"
ACME_IDENTIFIER = ObjectIdentifier("1.3.6.1.5.5.7.1.31")


def challenge_certificate(name: str, key_authorization: str) -> bytes:
    """PEM: the certificate, then its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    # DER OCTET STRING of the 32-byte digest: tag 0x04, length 0x20.
    extension = x509.UnrecognizedExtension(ACME_IDENTIFIER, b"\x04\x20" + digest)
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        alt = x509.DNSName(name)
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME challenge")])
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(extension, critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def name_from_sni(sni: str) -> str:
    """RFC 8738: for an IP identifier the CA sends the reverse-DNS name as SNI."""
    sni = sni.rstrip(".").lower()
    if sni.endswith(".in-addr.arpa"):
        parts = sni.removesuffix(".in-addr.arpa").split(".")
        return ".".join(reversed(parts))
    if sni.endswith(".ip6.arpa"):
        nibbles = "".join(reversed(sni.removesuffix(".ip6.arpa").split(".")))
        return str(ipaddress.IPv6Address(int(nibbles, 16)))
    return sni
