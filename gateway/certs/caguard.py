"""A local CA that devices trust is never replaced silently.

Its SHA-256 fingerprint is remembered next to the configuration (gateway/store/statecheck.py's memory
file, which survives the loss of the state folder). When the CA files are then missing or
different, the gateway refuses to make a new one: every enrolled device would fail its
handshake. Only ``gateway cert self-signed --new-ca`` replaces it, on purpose, with a warning.
"""

from __future__ import annotations

import hashlib
import logging

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.certs.authority import CA_CERT_NAME, LocalCa, certs_folder, load_ca
from gateway.certs.load import CertError
from gateway.config import GatewayConfig
from gateway.store.statecheck import read_memory, remember

logger = logging.getLogger("gateway.tls")

NEW_CA_COMMAND = "gateway cert self-signed --new-ca"


def ca_fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _pretty(fp: str) -> str:
    return ":".join(fp[i:i + 2] for i in range(0, len(fp), 2)).upper()


def remembered_ca(cfg: GatewayConfig) -> str | None:
    value = read_memory(cfg.source).get("ca_fingerprint")
    return str(value) if value else None


def check_local_ca(cfg: GatewayConfig) -> LocalCa | None:
    """The existing CA when it is the remembered one (or none is remembered). Raises CertError
    when a CA existed before and is now missing or another one."""
    folder = certs_folder(cfg.state_dir)
    existing = load_ca(folder)
    remembered = remembered_ca(cfg)
    if remembered is None:
        return existing
    if existing is None:
        raise CertError(
            f"the local CA {folder / CA_CERT_NAME} is missing, but this gateway used one before (SHA-256 "
            f"{_pretty(remembered)}) and devices trust it; a new CA is NOT created. Restore ca.pem and ca.key "
            f"from a backup of the state folder, or make a new CA on purpose with `{NEW_CA_COMMAND}` "
            "(every device must then be re-enrolled)")
    if ca_fingerprint(existing.certificate) != remembered:
        raise CertError(
            f"the local CA {existing.cert_file} is not the one this gateway used before (SHA-256 "
            f"{_pretty(remembered)}) and devices trust. Restore the old ca.pem and ca.key, or accept this CA "
            f"on purpose with `{NEW_CA_COMMAND}` (every device must then be re-enrolled)")
    return existing


def remember_ca(cfg: GatewayConfig, ca: LocalCa) -> None:
    fp = ca_fingerprint(ca.certificate)
    if remembered_ca(cfg) != fp:
        remember(cfg.source, ca_fingerprint=fp)


def warn_new_ca(cfg: GatewayConfig, ca: LocalCa, previous: str | None) -> None:
    if previous is not None and previous != ca_fingerprint(ca.certificate):
        logger.warning("a NEW local CA replaces the one devices trusted (SHA-256 %s): every device must be "
                       "re-enrolled with %s", _pretty(previous), ca.cert_file, extra={"event": "new-local-ca"})
