"""Import of an issued certificate: check everything, then install where the config points."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from gateway.certs.authority import certs_folder
from gateway.certs.inspect import configured_hosts, covers, describe
from gateway.certs.install import PRIVATE_MODE, install_pair, key_pem
from gateway.utils.files import atomic_write
from gateway.certs.load import CertBundle, CertError, bundle_from, check_dates, parse_material, read_file
from gateway.config import GatewayConfig

IMPORTED_CERT_NAME = "imported.pem"
IMPORTED_KEY_NAME = "imported.key"


@dataclass(frozen=True)
class ImportResult:
    cert_file: Path
    key_file: Path | None  # None: the key went into cert_file
    bundle: CertBundle
    covered: list[str]
    not_covered: list[str]
    config_lines: list[str]  # what to add to the config when it names no certificate yet


def read_bundle(cert_file: Path, key_file: Path | None, password: bytes | None,
                now: datetime.datetime | None = None) -> CertBundle:
    """Everything checked before anything is written: key found and matching, dates valid."""
    materials = [(cert_file, parse_material(read_file(cert_file), cert_file, password))]
    if key_file is not None:
        materials.append((key_file, parse_material(read_file(key_file), key_file, password)))
    bundle = bundle_from(materials, cert_file)
    check_dates(bundle.leaf, cert_file, now)
    return bundle


def import_certificate(cfg: GatewayConfig, cert_file: Path, key_file: Path | None = None,
                       password: bytes | None = None, base_id: str | None = None,
                       now: datetime.datetime | None = None) -> ImportResult:
    bundle = read_bundle(cert_file, key_file, password, now)
    target_cert, target_key, config_lines = _targets(cfg, base_id)
    if target_key is None:
        # The config names one file for both: certificate chain and key together, owner-only.
        atomic_write(target_cert, bundle.chain_pem() + key_pem(bundle.key), PRIVATE_MODE)
    else:
        install_pair(target_cert, target_key, bundle.chain_pem(), bundle.key)
    view = describe(list(bundle.chain), now=now)
    hosts = configured_hosts(cfg)
    return ImportResult(
        cert_file=target_cert,
        key_file=target_key,
        bundle=bundle,
        covered=[h for h in hosts if covers(view, h)],
        not_covered=[h for h in hosts if not covers(view, h)],
        config_lines=config_lines,
    )


def _targets(cfg: GatewayConfig, base_id: str | None) -> tuple[Path, Path | None, list[str]]:
    if base_id is not None:
        base = cfg.base_by_id(base_id)
        if base is None:
            known = ", ".join(b.id for b in cfg.bases) or "none"
            raise CertError(f"{cfg.source}: no base with id {base_id!r} (bases: {known})")
        if base.tls is not None and base.tls.cert is not None:
            return base.tls.cert, base.tls.key, []
        folder = certs_folder(cfg.state_dir) / f"base-{_safe(base.id)}"
        cert, key = folder / IMPORTED_CERT_NAME, folder / IMPORTED_KEY_NAME
        return cert, key, [f"# under the base with id {base.id}:", "tls:", f"  cert: {cert}", f"  key: {key}"]
    if cfg.tls.cert is not None:
        return cfg.tls.cert, cfg.tls.key, []
    folder = certs_folder(cfg.state_dir)
    cert, key = folder / IMPORTED_CERT_NAME, folder / IMPORTED_KEY_NAME
    return cert, key, ["tls:", f"  cert: {cert}", f"  key: {key}"]


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)
