"""Certificates: the local test-lab CA, requests (CSR), import, inspection and the TLS policy.

Pure core: no mitmproxy here. ``addons/tls.py`` serves what this package builds.
"""

from gateway.certs.inspect import certificate_problems
from gateway.certs.load import CertBundle, CertError, load_bundle
from gateway.certs.sources import (
    CertSource,
    base_source,
    default_source,
    ensure_default_certificate,
    load_source,
    local_ca_file,
    source_for,
)

__all__ = [
    "CertBundle",
    "CertError",
    "CertSource",
    "base_source",
    "certificate_problems",
    "default_source",
    "ensure_default_certificate",
    "load_bundle",
    "load_source",
    "local_ca_file",
    "source_for",
]

