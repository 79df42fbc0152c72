"""The device CA and the device (client) certificates it issues, packed as PKCS#12 files.

A separate CA from the local server CA: a terminal that trusts the server CA must not thereby be
able to mint device certificates, and revoking every device (a new device CA) must not touch the
server certificate the terminals already trust. Its key never leaves the state folder.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.certs.authority import BACKDATE, now_utc
from gateway.certs.install import write_private_key, write_public
from gateway.certs.load import CertError, load_bundle

DEVICE_CA_FOLDER = "device-ca"
CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"
CA_DAYS = 10 * 365
DEFAULT_DEVICE_DAYS = 365
# Warn (gateway check) this many days before a device certificate expires.
EXPIRY_WARNING_DAYS = 30
# A device name becomes the certificate's CN and a file name: keep it plain.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# Modern PKCS#12 (PBES2, AES-256, SHA-256 MAC) is what OpenSSL 3 and Android 10+ read; older
# Android key stores read only the PKCS#12 of the 2000s (3DES, SHA-1 MAC) and often lack
# ECDSA client keys, so the legacy form also carries an RSA key.
PKCS12_KDF_ROUNDS = 50_000
RSA_KEY_BITS = 2048

DeviceKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class DeviceCa:
    cert_file: Path
    key_file: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def device_ca_folder(state_dir: Path) -> Path:
    return Path(state_dir) / DEVICE_CA_FOLDER


def check_device_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise CertError(f"device name {name!r} must be 1-63 letters, digits, dots, dashes or underscores, "
                        "starting with a letter or digit (e.g. tsd-07)")
    return name


def load_device_ca(state_dir: Path) -> DeviceCa | None:
    folder = device_ca_folder(state_dir)
    cert_file, key_file = folder / CA_CERT_NAME, folder / CA_KEY_NAME
    if not cert_file.exists() and not key_file.exists():
        return None
    bundle = load_bundle(cert_file, key_file)
    if not isinstance(bundle.key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{key_file}: the device CA key must be an ECDSA key")
    return DeviceCa(cert_file, key_file, bundle.leaf, bundle.key)


def load_or_create_device_ca(state_dir: Path, now: datetime.datetime | None = None) -> DeviceCa:
    """The device CA, created on first use. Workers start at the same moment: the CA is built in
    a folder of its own and renamed into place in one step, so whoever comes second loads the
    first one's CA instead of replacing it (devices signed by a replaced CA would be refused)."""
    existing = load_device_ca(state_dir)
    if existing is not None:
        return existing
    folder = device_ca_folder(state_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{DEVICE_CA_FOLDER}-", dir=folder.parent))  # 0700
    try:
        _write_new_ca(building, now or now_utc())
        try:
            os.rename(building, folder)
        except OSError:
            if not folder.exists():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    ca = load_device_ca(state_dir)
    assert ca is not None
    return ca


def _write_new_ca(folder: Path, now: datetime.datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"Gateway device CA ({socket.gethostname()})"[:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TLS gateway"),
    ])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private_key(folder / CA_KEY_NAME, key)
    write_public(folder / CA_CERT_NAME, certificate.public_bytes(serialization.Encoding.PEM))


def issue_device_certificate(
    ca: DeviceCa, name: str, *, days: int = DEFAULT_DEVICE_DAYS, rsa_key: bool = False,
    now: datetime.datetime | None = None,
) -> tuple[x509.Certificate, DeviceKey]:
    """A client-authentication leaf whose CN is the device name."""
    check_device_name(name)
    if days < 1:
        raise CertError(f"--days must be at least 1, got {days}")
    now = now or now_utc()
    key: DeviceKey = (rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS) if rsa_key
                      else ec.generate_private_key(ec.SECP256R1()))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=days), ca.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=rsa_key,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return certificate, key


def new_p12_password() -> str:
    """Typed by a person on a terminal's keyboard: letters and digits only, no look-alikes."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(16))


def pkcs12_bytes(name: str, certificate: x509.Certificate, key: DeviceKey, ca_certificate: x509.Certificate,
                 password: str, *, legacy: bool = False) -> bytes:
    if legacy:
        algorithm = pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC
        mac: hashes.HashAlgorithm = hashes.SHA1()
    else:
        algorithm = pkcs12.PBES.PBESv2SHA256AndAES256CBC
        mac = hashes.SHA256()
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                  .kdf_rounds(PKCS12_KDF_ROUNDS).key_cert_algorithm(algorithm).hmac_hash(mac)
                  .build(password.encode("utf-8")))
    return pkcs12.serialize_key_and_certificates(name.encode("utf-8"), key, certificate, [ca_certificate], encryption)


def serial_text(certificate: x509.Certificate) -> str:
    return format(certificate.serial_number, "x")


def load_trusted_cas(path: Path) -> list[x509.Certificate]:
    """A company CA file (PEM, one or more certificates) named by ``tls.client_ca``."""
    try:
        cas = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as e:
        raise CertError(f"{path}: cannot read the client CA certificate(s) ({e}); give a PEM file") from None
    return cas


def check_device_certificate(leaf: x509.Certificate, cas: list[x509.Certificate],
                             now: datetime.datetime | None = None) -> str:
    """Why ``leaf`` is not a valid device certificate under ``cas`` ("" when it is)."""
    now = now or now_utc()
    issuer = next((ca for ca in cas if ca.subject == leaf.issuer), None)
    if issuer is None:
        return "unknown-ca"
    try:
        leaf.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):  # InvalidSignature and unsupported algorithms alike
        return "bad-signature"
    if now < leaf.not_valid_before_utc:
        return "not-yet-valid"
    if now > leaf.not_valid_after_utc or now > issuer.not_valid_after_utc:
        return "expired"
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        return "not-for-clients"
    return ""


def device_name_of(leaf: x509.Certificate) -> str:
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""
