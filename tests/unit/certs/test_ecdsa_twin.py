"""The generated certificate's ECDSA P-256 twin (issue 22): made beside server.pem with the same
names, CA and end date; made again when server.pem changes; served from one context with it,
OpenSSL choosing by what the client offers (real in-memory handshakes)."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL

from gateway.certs.authority import (
    create_ca,
    ensure_ecdsa_twin,
    ensure_local_server_certificate,
    issue_server_certificate,
    load_ca,
    write_server_certificate,
)
from gateway.certs.context import server_context
from gateway.certs.load import load_bundle
from gateway.certs.sources import CertSource, load_source, load_twin

LOOPBACK = [ipaddress.ip_address("127.0.0.1")]


def san(leaf: x509.Certificate) -> list[str]:
    return [str(v.value) for v in leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value]


def test_twin_made_beside_the_rsa_certificate_with_the_same_names_and_dates(tmp_path: Path) -> None:
    cert, key = ensure_local_server_certificate(tmp_path, hosts=("gw.lan",))
    rsa_bundle = load_bundle(cert, key)
    twin = load_bundle(tmp_path / "server-ecdsa.pem", tmp_path / "server-ecdsa.key")
    assert isinstance(rsa_bundle.key, rsa.RSAPrivateKey)
    assert isinstance(twin.key, ec.EllipticCurvePrivateKey) and twin.key.curve.name == "secp256r1"
    assert san(twin.leaf) == san(rsa_bundle.leaf) and "gw.lan" in san(twin.leaf)
    assert twin.leaf.not_valid_after_utc == rsa_bundle.leaf.not_valid_after_utc
    assert twin.chain[1:] == rsa_bundle.chain[1:]
    twin.leaf.verify_directly_issued_by(load_ca(tmp_path).certificate)  # type: ignore[union-attr]
    usage = twin.leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment
    assert (tmp_path / "server-ecdsa.key").stat().st_mode & 0o077 == 0


def test_an_existing_state_folder_keeps_its_rsa_certificate_and_gains_a_twin(tmp_path: Path) -> None:
    """Upgrade: a folder from before issue 22 has server.pem only; it stays byte for byte."""
    ca = create_ca(tmp_path)
    leaf, key = issue_server_certificate(ca, ["old.lan"], LOOPBACK, days=200)
    write_server_certificate(tmp_path, ca, leaf, key)
    before = (tmp_path / "server.pem").read_bytes(), (tmp_path / "server.key").read_bytes()
    ensure_local_server_certificate(tmp_path)
    assert ((tmp_path / "server.pem").read_bytes(), (tmp_path / "server.key").read_bytes()) == before
    twin = load_bundle(tmp_path / "server-ecdsa.pem", tmp_path / "server-ecdsa.key").leaf
    assert san(twin) == ["old.lan", "127.0.0.1"]
    twin_pem = (tmp_path / "server-ecdsa.pem").read_bytes()
    assert ensure_ecdsa_twin(tmp_path, ca) is False  # nothing changed: not made again
    assert (tmp_path / "server-ecdsa.pem").read_bytes() == twin_pem


def test_twin_follows_a_new_rsa_certificate_and_a_new_ca(tmp_path: Path) -> None:
    ensure_local_server_certificate(tmp_path)
    ca = load_ca(tmp_path)
    assert ca is not None
    leaf, key = issue_server_certificate(ca, ["renamed.lan"], [], days=30)
    write_server_certificate(tmp_path, ca, leaf, key)
    assert ensure_ecdsa_twin(tmp_path, ca) is True
    assert san(load_bundle(tmp_path / "server-ecdsa.pem", tmp_path / "server-ecdsa.key").leaf) == ["renamed.lan"]
    # a CA made again has the same name: the twin is judged by the whole chain, not the name
    new_ca = create_ca(tmp_path)
    assert new_ca.certificate.subject == ca.certificate.subject
    leaf, key = issue_server_certificate(new_ca, ["renamed.lan"], [], days=30)
    write_server_certificate(tmp_path, new_ca, leaf, key)
    assert ensure_ecdsa_twin(tmp_path, new_ca) is True
    load_bundle(tmp_path / "server-ecdsa.pem", tmp_path / "server-ecdsa.key").leaf.verify_directly_issued_by(new_ca.certificate)


def test_a_twin_from_another_ca_is_not_served(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ensure_local_server_certificate(tmp_path)
    (tmp_path / "other").mkdir()
    other = create_ca(tmp_path / "other")
    leaf, key = issue_server_certificate(other, ["localhost"], [], days=30, ecdsa=True)
    write_server_certificate(tmp_path, other, leaf, key)
    source = CertSource(tmp_path / "server.pem", tmp_path / "server.key",
                        twin_cert=tmp_path / "server-ecdsa.pem", twin_key=tmp_path / "server-ecdsa.key")
    assert load_twin(source, load_source(source)) is None
    assert "another CA" in caplog.text


def _served_key_type(context: SSL.Context, client: ssl.SSLContext) -> str:
    """One in-memory handshake; the type of the certificate the server sent."""
    server = SSL.Connection(context)
    server.set_accept_state()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client.wrap_bio(incoming, outgoing, server_hostname="localhost")
    for _ in range(10):
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pass
        if data := outgoing.read():
            server.bio_write(data)
        try:
            server.do_handshake()
        except SSL.WantReadError:
            pass
        try:
            incoming.write(server.bio_read(65536))
        except SSL.WantReadError:
            pass
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    key = x509.load_der_x509_certificate(der).public_key()
    return "ecdsa" if isinstance(key, ec.EllipticCurvePublicKey) else "rsa"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_one_context_serves_ecdsa_to_those_who_offer_it_and_rsa_to_the_others(tmp_path: Path,
                                                                              version: ssl.TLSVersion) -> None:
    cert, key = ensure_local_server_certificate(tmp_path)
    source = CertSource(cert, key, twin_cert=tmp_path / "server-ecdsa.pem", twin_key=tmp_path / "server-ecdsa.key")
    bundle = load_source(source)
    context = server_context(bundle, twin=load_twin(source, bundle))

    def client(sigalgs: str | None = None, ciphers: str | None = None) -> ssl.SSLContext:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.load_verify_locations(tmp_path / "ca.pem")  # and the chain verifies, for both
        c.minimum_version = c.maximum_version = version
        if ciphers:
            c.set_ciphers(ciphers)
        if sigalgs and hasattr(c, "set_client_sigalgs"):
            c.set_client_sigalgs(sigalgs)  # pragma: no cover - Python 3.15+
        return c

    assert _served_key_type(context, client()) == "ecdsa"
    if version == ssl.TLSVersion.TLSv1_2:
        # a TLS 1.2 client without ECDSA cipher suites (an old terminal) gets the RSA certificate
        assert _served_key_type(context, client(ciphers="ECDHE-RSA-AES128-GCM-SHA256")) == "rsa"
    # without a twin: RSA for everyone, as before
    assert _served_key_type(server_context(bundle), client()) == "rsa"


def test_twin_is_not_made_when_there_is_no_rsa_certificate(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    assert ensure_ecdsa_twin(tmp_path, ca) is False
    assert not (tmp_path / "server-ecdsa.pem").exists()
