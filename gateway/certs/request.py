"""A certificate request (PKCS#10 CSR) for a trusted certificate authority.

The seed: "сформировав запрос к одному из доверенных центров сертификации". The private key
stays here (owner-only file); only the request goes to the CA.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.certs.authority import RSA_KEY_BITS, IpAddress
from gateway.certs.install import write_private_key, write_public
from gateway.certs.load import CertError

KEY_NAME = "gateway.key"
CSR_NAME = "gateway.csr"


@dataclass(frozen=True)
class RequestFiles:
    key: Path
    csr: Path


def build_request(names: list[str], ips: list[IpAddress], organization: str | None = None,
                  key: rsa.RSAPrivateKey | None = None) -> tuple[x509.CertificateSigningRequest, rsa.RSAPrivateKey]:
    if not names and not ips:
        raise CertError("a request needs at least one --name or --ip: the names devices use to reach the gateway")
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, (names[0] if names else str(ips[0]))[:64])]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64]))
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names] + [x509.IPAddress(ip) for ip in ips]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(attributes))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr, key


def write_request(out: Path, names: list[str], ips: list[IpAddress], organization: str | None = None) -> RequestFiles:
    """Write gateway.key (0600) and gateway.csr into ``out``. Refuses to overwrite a key: a
    request may already be with a CA, and its certificate would then match nothing."""
    files = RequestFiles(out / KEY_NAME, out / CSR_NAME)
    if files.key.exists():
        raise CertError(f"{files.key}: already exists (a request made earlier may still be waiting for its "
                        "certificate); choose another --out folder or delete it first")
    csr, key = build_request(names, ips, organization)
    write_private_key(files.key, key)
    write_public(files.csr, csr.public_bytes(serialization.Encoding.PEM))
    return files


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def parse_names(values: list[str]) -> list[str]:
    """DNS names as certificates carry them: internationalised names (склад.рф) in their
    xn-- form, a leading "*." allowed; anything else is refused with the reason."""
    names = []
    for value in values:
        text = value.strip().rstrip(".")
        wildcard = text.startswith("*.")
        try:
            ascii_name = (text[2:] if wildcard else text).encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise CertError(f"--name {value!r} is not a DNS name; give e.g. --name sklad.example.ru") from None
        if not ascii_name or len(ascii_name) > 253 or not all(_LABEL.match(l) for l in ascii_name.split(".")):
            raise CertError(f"--name {value!r} is not a DNS name (letters, digits, '-' and '.' only); "
                            "give e.g. --name sklad.example.ru, and addresses with --ip")
        names.append(("*." if wildcard else "") + ascii_name)
    return names


def parse_ips(values: list[str]) -> list[IpAddress]:
    ips = []
    for value in values:
        try:
            ips.append(ipaddress.ip_address(value.strip("[]")))
        except ValueError:
            raise CertError(f"--ip {value!r} is not an IP address; give e.g. --ip 192.168.1.10 (names go in --name)") from None
    return ips
