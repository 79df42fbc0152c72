"""The TLS policy, as one pyOpenSSL server context per certificate.

Building a context parses keys and certificates; doing that once per certificate (not per
connection) is what keeps handshakes cheap. Policy: Mozilla "intermediate" (guidelines 5.7):
TLS 1.2 and 1.3 only, AEAD ciphers with forward secrecy, ffdhe2048 for DHE, no compression,
no renegotiation, the client's cipher order respected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from OpenSSL import SSL

from gateway.certs import tickets

from gateway.certs.install import PUBLIC_MODE
from gateway.utils.files import atomic_write
from gateway.certs.load import CertBundle

# TLS 1.3 suites are OpenSSL's defaults (all three AEAD suites), which is what Mozilla lists.
INTERMEDIATE_TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
)

MIN_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}

# RFC 7919 ffdhe2048, the group Mozilla names for DHE; a fixed, published group needs no
# minutes-long parameter generation and has no hidden weakness.
FFDHE2048_PEM = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""

H2 = b"h2"
HTTP11 = b"http/1.1"
HTTP10 = b"http/1.0"


def dh_params_file(folder: Path) -> Path:
    """pyOpenSSL loads DH parameters only from a file; keep one next to the certificates."""
    path = folder / "ffdhe2048.pem"
    try:
        if path.read_bytes() == FFDHE2048_PEM:
            return path
    except OSError:
        pass
    atomic_write(path, FFDHE2048_PEM, PUBLIC_MODE)
    return path


def alpn_selector(http2: bool) -> Callable[[SSL.Connection, list[bytes]], Any]:
    def select(_conn: SSL.Connection, offered: list[bytes]) -> Any:
        if http2 and H2 in offered:
            return H2
        for protocol in (HTTP11, HTTP10):
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS
    return select


def server_context(
    bundle: CertBundle,
    *,
    min_version: str = "1.2",
    http2: bool = True,
    dh_file: Path | None = None,
    twin: CertBundle | None = None,
) -> SSL.Context:
    """A server context serving ``bundle`` under the gateway's TLS policy, and ``twin`` (a
    certificate with another key type and the same chain above it) beside it."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(MIN_VERSIONS[min_version])
    context.set_max_proto_version(SSL.TLS1_3_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3)
    # An idle connection gives its read and write buffers (~34 KiB) back, as nginx's do (issue 22).
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    context.set_cipher_list(":".join(INTERMEDIATE_TLS12_CIPHERS).encode("ascii"))
    if dh_file is not None:
        context.load_tmp_dh(str(dh_file).encode())
    context.use_certificate(bundle.leaf)
    for intermediate in bundle.chain[1:]:
        context.add_extra_chain_cert(intermediate)
    context.use_privatekey(bundle.key)
    context.check_privatekey()
    if twin is not None:
        # OpenSSL keeps one certificate per key type; the chain above is the context's, shared.
        if twin.chain[1:] != bundle.chain[1:]:
            raise ValueError("the two certificates of one context must have the same issuer chain")
        context.use_certificate(twin.leaf)
        context.use_privatekey(twin.key)
        context.check_privatekey()
    context.set_alpn_select_callback(alpn_selector(http2))
    # No client certificates: terminals authenticate with passwords, not certificates.
    context.set_verify(SSL.VERIFY_NONE)
    tickets.apply(context)  # the workers' shared session-ticket key, when there are workers
    return context
