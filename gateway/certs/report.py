"""A certificate's facts and warnings as text: what `gateway cert show` prints and the console shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.certs.inspect import describe, load_local_ca, render, warnings_for
from gateway.certs.load import CertError, load_certificates
from gateway.certs.sources import base_source, default_source
from gateway.config import GatewayConfig


def report(path: Path, cfg: GatewayConfig | None, password: bytes | None = None) -> str:
    """Raises CertError naming the file and the fix."""
    chain = load_certificates(path, password)
    view = describe(chain, load_local_ca(cfg))
    return render(path, view, warnings_for(view, cfg))


@dataclass(frozen=True)
class ServedCertificate:
    base_id: str  # "" for the default certificate
    label: str  # the base's name, or "" for the default
    path: Path
    text: str  # report(); empty when ``problem`` is set
    problem: str = ""


def configured_certificates(cfg: GatewayConfig) -> list[ServedCertificate]:
    """The default certificate (when there is one yet) and each base's own, in `cert show`'s order."""
    found = []
    sources = [("", "", default_source(cfg))]
    sources += [(b.id, b.name, own) for b in cfg.bases if (own := base_source(b)) is not None]
    for base_id, label, source in sources:
        if not base_id and cfg.tls.cert is None and not source.cert.exists():
            continue  # created at the first start
        try:
            found.append(ServedCertificate(base_id, label, source.cert, report(source.cert, cfg)))
        except CertError as e:
            found.append(ServedCertificate(base_id, label, source.cert, "", str(e)))
    return found
