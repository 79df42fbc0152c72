"""Which certificate files serve which base, and loading them ready to serve."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

from gateway.certs.acme_storage import certificate_file
from gateway.certs.authority import (
    CA_CERT_NAME, ECDSA_CERT_NAME, ECDSA_KEY_NAME, SERVER_CERT_NAME, SERVER_KEY_NAME, certs_folder,
    ensure_local_server_certificate, load_ca,
)
from gateway.certs.caguard import check_local_ca, remember_ca
from gateway.certs.load import CertBundle, CertError, check_dates, load_bundle, read_password_file
from gateway.config import BaseConfig, GatewayConfig

logger = logging.getLogger("gateway.tls")

# (mtime in ns, size) per file, or None for a missing file: cheap to poll every second.
Stamp = tuple[tuple[int, int] | None, ...]


@dataclass(frozen=True)
class CertSource:
    cert: Path
    key: Path | None = None
    password_file: Path | None = None
    # A second certificate of another key type served from the same context (the generated
    # certificate's ECDSA twin); OpenSSL picks by what the client offers.
    twin_cert: Path | None = None
    twin_key: Path | None = None

    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.cert, self.key, self.password_file, self.twin_cert, self.twin_key)
                     if p is not None)

    def stamp(self) -> Stamp:
        return tuple(_stat(p) for p in self.files())


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def generated_paths(cfg: GatewayConfig) -> tuple[Path, Path]:
    folder = certs_folder(cfg.state_dir)
    return folder / SERVER_CERT_NAME, folder / SERVER_KEY_NAME


def local_ca_file(cfg: GatewayConfig) -> Path:
    return certs_folder(cfg.state_dir) / CA_CERT_NAME


def default_source(cfg: GatewayConfig) -> CertSource:
    """The configured certificate, or the generated one when none is configured."""
    if cfg.tls.cert is not None:
        return CertSource(cfg.tls.cert, cfg.tls.key, cfg.tls.password_file)
    cert, key = generated_paths(cfg)
    folder = certs_folder(cfg.state_dir)
    return CertSource(cert, key, twin_cert=folder / ECDSA_CERT_NAME, twin_key=folder / ECDSA_KEY_NAME)


def base_source(base: BaseConfig) -> CertSource | None:
    """The base's own certificate, if it names one."""
    if base.tls is None or base.tls.cert is None:
        return None
    return CertSource(base.tls.cert, base.tls.key, base.tls.password_file)


def source_for(cfg: GatewayConfig, base: BaseConfig) -> CertSource:
    if base.tls is not None and base.tls.acme:
        # Chain and key in one file, replaced in one rename by each renewal.
        return CertSource(certificate_file(cfg.state_dir, base.id))
    return base_source(base) or default_source(cfg)


def load_source(source: CertSource, now: datetime.datetime | None = None) -> CertBundle:
    """The certificate ready to serve: key matches, dates valid. Raises CertError."""
    password = read_password_file(source.password_file) if source.password_file else None
    bundle = load_bundle(source.cert, source.key, password)
    check_dates(bundle.leaf, source.cert, now)
    return bundle


def load_twin(source: CertSource, primary: CertBundle, now: datetime.datetime | None = None) -> CertBundle | None:
    """The source's second certificate, or None: a twin that is missing, unusable or from
    another CA than ``primary`` leaves the first certificate serving alone (every client can
    use that one), said in the log."""
    if source.twin_cert is None:
        return None
    try:
        bundle = load_bundle(source.twin_cert, source.twin_key)
        check_dates(bundle.leaf, source.twin_cert, now)
        if bundle.chain[1:] != primary.chain[1:]:
            raise CertError(f"{source.twin_cert}: issued by another CA than {source.cert}")
    except CertError as e:
        logger.warning("serving %s alone: %s", source.cert, e)
        return None
    return bundle


def ensure_default_certificate(cfg: GatewayConfig) -> tuple[Path, Path]:
    """The default certificate and key files. With none configured, a local CA and a server
    certificate signed by it are created once under ``state_dir/certs`` (and the server
    certificate renewed near its expiry, keeping the CA)."""
    if cfg.tls.cert is not None:
        return cfg.tls.cert, cfg.tls.key or cfg.tls.cert
    check_local_ca(cfg)  # raises: a CA devices trust is never replaced silently
    try:
        cert, key = ensure_local_server_certificate(certs_folder(cfg.state_dir), cfg.listen_host,
                                                    hosts=cfg.tls.hosts)
        ca = load_ca(certs_folder(cfg.state_dir))
        if ca is not None:
            remember_ca(cfg, ca)
    except OSError as e:
        raise CertError(f"{certs_folder(cfg.state_dir)}: cannot create the test certificate ({e.strerror}); "
                        "check state_dir in the config") from None
    logger.info("no tls.cert configured: serving the generated certificate %s; "
                "devices must trust the local CA %s", cert, local_ca_file(cfg))
    return cert, key
