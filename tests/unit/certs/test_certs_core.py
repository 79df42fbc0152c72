"""The certificate core with plain function calls: CA and leaves, reading every format,
chain order, dates, coverage, warnings, requests, import and the enrolment answers."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.certs import certificate_problems, ensure_default_certificate
from gateway.certs.authority import (
    LocalCa,
    create_ca,
    ensure_local_server_certificate,
    issue_server_certificate,
    load_ca,
)
from gateway.certs.context import alpn_selector, server_context
from gateway.certs.enrolment import DER_TYPE, PEM_TYPE, EnrolmentContent, answer
from gateway.certs.importer import import_certificate
from gateway.certs.inspect import covers, describe, warnings_for
from gateway.certs.load import CertError, load_bundle, order_chain
from gateway.certs.request import build_request, parse_ips, write_request
from gateway.config import parse_config

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
LOOPBACK = [ipaddress.ip_address("127.0.0.1")]


def pem(obj: x509.Certificate) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def key_pem(key: object, password: bytes | None = None) -> bytes:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCa:
    return create_ca(tmp_path_factory.mktemp("ca"), now=NOW - datetime.timedelta(days=1))


@pytest.fixture(scope="module")
def leaf(ca: LocalCa) -> tuple[x509.Certificate, object]:
    return issue_server_certificate(ca, ["gw.lan", "*.shop.lan"], LOOPBACK, days=90, now=NOW)


def config(tmp_path: Path, **tls: object) -> object:
    data = {"state_dir": str(tmp_path / "state"), "listen_host": "127.0.0.1", "tls": tls,
            "bases": [{"id": "b1", "name": "One", "data": {"listen": 18001, "backend": "http://127.0.0.1:1"}}]}
    return parse_config(data, tmp_path / "gateway.yaml")


# --- authority ---------------------------------------------------------------------------------

def test_default_certificate_created_once_with_private_keys_and_renewal_keeps_ca(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cert, key = ensure_default_certificate(cfg)  # type: ignore[arg-type]
    folder = tmp_path / "state" / "certs"
    assert (cert, key) == (folder / "server.pem", folder / "server.key")
    for private in (folder / "ca.key", key):
        assert private.stat().st_mode & 0o077 == 0
    first = cert.read_bytes()
    ca_before = (folder / "ca.pem").read_bytes()
    ensure_default_certificate(cfg)  # type: ignore[arg-type]
    assert cert.read_bytes() == first, "must not be re-created on every start"
    bundle = load_bundle(cert, key)
    assert len(bundle.chain) == 2 and bundle.chain[1].subject == bundle.leaf.issuer
    view = describe(list(bundle.chain))
    assert covers(view, "localhost") and covers(view, "127.0.0.1") and covers(view, "::1")
    # near expiry the server certificate is renewed; the CA stays, so devices keep trusting
    ensure_local_server_certificate(folder, now=bundle.leaf.not_valid_after_utc - datetime.timedelta(days=5))
    assert cert.read_bytes() != first
    assert (folder / "ca.pem").read_bytes() == ca_before
    bundle.leaf.verify_directly_issued_by(load_ca(folder).certificate)  # type: ignore[union-attr]


def test_leaf_has_server_extensions(leaf: tuple[x509.Certificate, object], ca: LocalCa) -> None:
    cert, _ = leaf
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    cert.verify_directly_issued_by(ca.certificate)


# --- reading -----------------------------------------------------------------------------------

def test_pem_in_any_order_gives_leaf_first(leaf: tuple[x509.Certificate, object], ca: LocalCa, tmp_path: Path) -> None:
    cert, key = leaf
    mixed = tmp_path / "bundle.pem"
    mixed.write_bytes(key_pem(key) + pem(ca.certificate) + pem(cert))
    bundle = load_bundle(mixed)
    assert bundle.chain == (cert, ca.certificate)
    assert order_chain([ca.certificate, cert]) == [cert, ca.certificate]


def test_der_certificate_with_separate_key(leaf: tuple[x509.Certificate, object], tmp_path: Path) -> None:
    cert, key = leaf
    (tmp_path / "c.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (tmp_path / "k.pem").write_bytes(key_pem(key))
    assert load_bundle(tmp_path / "c.der", tmp_path / "k.pem").leaf == cert


def test_pfx_right_and_wrong_password(leaf: tuple[x509.Certificate, object], ca: LocalCa, tmp_path: Path) -> None:
    cert, key = leaf
    pfx = pkcs12.serialize_key_and_certificates(b"gw", key, cert, [ca.certificate],  # type: ignore[arg-type]
                                                serialization.BestAvailableEncryption(b"S3cret-pfx"))
    path = tmp_path / "gw.pfx"
    path.write_bytes(pfx)
    assert load_bundle(path, password=b"S3cret-pfx").chain == (cert, ca.certificate)
    with pytest.raises(CertError, match="wrong PFX password") as wrong:
        load_bundle(path, password=b"nope")
    assert "nope" not in str(wrong.value)
    with pytest.raises(CertError, match="needs its password"):
        load_bundle(path)


def test_encrypted_pem_key(leaf: tuple[x509.Certificate, object], tmp_path: Path) -> None:
    cert, key = leaf
    (tmp_path / "c.pem").write_bytes(pem(cert))
    (tmp_path / "k.pem").write_bytes(key_pem(key, b"kpass"))
    assert load_bundle(tmp_path / "c.pem", tmp_path / "k.pem", b"kpass").key is not None
    with pytest.raises(CertError, match="protected by a password"):
        load_bundle(tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises(CertError, match="wrong password"):
        load_bundle(tmp_path / "c.pem", tmp_path / "k.pem", b"bad")


@pytest.mark.parametrize("content, message", [
    (b"hello, world", "not a certificate"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a certificate"),
])
def test_not_a_certificate(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "x.pem").write_bytes(content)
    with pytest.raises(CertError, match=message):
        load_bundle(tmp_path / "x.pem")


def test_missing_key_and_mismatched_key(leaf: tuple[x509.Certificate, object], tmp_path: Path) -> None:
    cert, _ = leaf
    (tmp_path / "c.pem").write_bytes(pem(cert))
    with pytest.raises(CertError, match="no private key found"):
        load_bundle(tmp_path / "c.pem")
    (tmp_path / "other.key").write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(CertError, match="key does not match"):
        load_bundle(tmp_path / "c.pem", tmp_path / "other.key")
    with pytest.raises(CertError, match="file missing"):
        load_bundle(tmp_path / "absent.pem")


# --- inspection --------------------------------------------------------------------------------

def test_coverage_rules(leaf: tuple[x509.Certificate, object], ca: LocalCa) -> None:
    view = describe([leaf[0], ca.certificate], ca.certificate, NOW)
    assert view.kind == "local CA" and view.days_left == 90
    assert covers(view, "gw.lan") and covers(view, "GW.LAN.") and covers(view, "till1.shop.lan")
    assert not covers(view, "a.b.shop.lan") and not covers(view, "shop.lan")
    assert covers(view, "127.0.0.1") and not covers(view, "127.0.0.2")
    assert view.sha256 == leaf[0].fingerprint(hashes.SHA256()).hex(":").upper()


def test_warnings(leaf: tuple[x509.Certificate, object], ca: LocalCa, tmp_path: Path) -> None:
    view = describe([leaf[0]], ca.certificate, NOW)
    assert warnings_for(view, None, now=NOW) == []
    soon = warnings_for(view, None, now=NOW + datetime.timedelta(days=70))
    assert len(soon) == 1 and "expires within 30 days" in soon[0]
    assert "expired on" in warnings_for(view, None, now=NOW + datetime.timedelta(days=91))[0]
    public = parse_config({"state_dir": str(tmp_path), "listen_host": "93.184.216.34", "bases": []},
                          tmp_path / "g.yaml")
    found = warnings_for(view, public, now=NOW)
    assert any("does not cover 93.184.216.34" in w for w in found)
    assert any("devices on the internet cannot use it" in w for w in found)
    private = parse_config({"state_dir": str(tmp_path), "listen_host": "127.0.0.1", "bases": []}, tmp_path / "g.yaml")
    assert warnings_for(view, private, now=NOW) == []


def test_certificate_problems(leaf: tuple[x509.Certificate, object], tmp_path: Path) -> None:
    cert, key = leaf
    (tmp_path / "c.pem").write_bytes(pem(cert))
    (tmp_path / "k.pem").write_bytes(key_pem(key))
    cfg = config(tmp_path, cert=str(tmp_path / "c.pem"), key=str(tmp_path / "k.pem"))
    assert certificate_problems(cfg, NOW) == []  # type: ignore[arg-type]
    later = certificate_problems(cfg, NOW + datetime.timedelta(days=100))  # type: ignore[arg-type]
    assert len(later) == 1 and later[0][0] is None and "expired on" in later[0][1]
    missing = config(tmp_path, cert=str(tmp_path / "gone.pem"), key=str(tmp_path / "k.pem"))
    assert "file missing" in certificate_problems(missing, NOW)[0][1]  # type: ignore[arg-type]


# --- request, import ---------------------------------------------------------------------------

def test_request_has_names_ips_and_a_private_key(tmp_path: Path) -> None:
    files = write_request(tmp_path / "req", ["gw.example.com"], parse_ips(["203.0.113.5"]), "Acme")
    csr = x509.load_pem_x509_csr(files.csr.read_bytes())
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("203.0.113.5")]
    assert files.key.stat().st_mode & 0o077 == 0
    with pytest.raises(CertError, match="already exists"):
        write_request(tmp_path / "req", ["x"], [])
    with pytest.raises(CertError, match="not an IP address"):
        parse_ips(["gw.lan"])
    with pytest.raises(CertError):
        build_request([], [])


def test_import_checks_everything_before_installing(leaf: tuple[x509.Certificate, object], ca: LocalCa,
                                                    tmp_path: Path) -> None:
    cert, key = leaf
    cfg = config(tmp_path)
    (tmp_path / "issued.pem").write_bytes(pem(ca.certificate) + pem(cert))
    (tmp_path / "wrong.key").write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(CertError, match="key does not match"):
        import_certificate(cfg, tmp_path / "issued.pem", tmp_path / "wrong.key", now=NOW)  # type: ignore[arg-type]
    assert not (tmp_path / "state" / "certs" / "imported.pem").exists()
    (tmp_path / "right.key").write_bytes(key_pem(key))
    with pytest.raises(CertError, match="expired on"):
        import_certificate(cfg, tmp_path / "issued.pem", tmp_path / "right.key",  # type: ignore[arg-type]
                           now=NOW + datetime.timedelta(days=365))
    with pytest.raises(CertError, match="not yet valid"):
        import_certificate(cfg, tmp_path / "issued.pem", tmp_path / "right.key",  # type: ignore[arg-type]
                           now=NOW - datetime.timedelta(days=30))
    result = import_certificate(cfg, tmp_path / "issued.pem", tmp_path / "right.key", now=NOW)  # type: ignore[arg-type]
    assert result.cert_file == tmp_path / "state" / "certs" / "imported.pem"
    assert result.config_lines[0] == "tls:" and result.covered == ["127.0.0.1"]
    installed = load_bundle(result.cert_file, result.key_file)
    assert installed.chain == (cert, ca.certificate)
    assert result.key_file is not None and result.key_file.stat().st_mode & 0o077 == 0
    # with the config pointing somewhere, it goes there
    target = config(tmp_path, cert=str(tmp_path / "live" / "c.pem"), key=str(tmp_path / "live" / "k.pem"))
    again = import_certificate(target, tmp_path / "issued.pem", tmp_path / "right.key", now=NOW)  # type: ignore[arg-type]
    assert again.cert_file == tmp_path / "live" / "c.pem" and again.config_lines == []


# --- TLS context, enrolment ----------------------------------------------------------------------

def test_alpn_selection() -> None:
    from OpenSSL import SSL
    with_h2, without = alpn_selector(True), alpn_selector(False)
    assert with_h2(None, [b"h2", b"http/1.1"]) == b"h2"  # type: ignore[arg-type]
    assert without(None, [b"h2", b"http/1.1"]) == b"http/1.1"  # type: ignore[arg-type]
    assert with_h2(None, [b"spdy/3"]) is SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[arg-type]


def test_server_context_builds(leaf: tuple[x509.Certificate, object], ca: LocalCa, tmp_path: Path) -> None:
    cert, key = leaf
    (tmp_path / "c.pem").write_bytes(pem(cert) + pem(ca.certificate) + key_pem(key))
    assert server_context(load_bundle(tmp_path / "c.pem"), min_version="1.3") is not None


def test_enrolment_answers(ca: LocalCa) -> None:
    content = EnrolmentContent.for_ca(ca.certificate)
    page = answer("GET", "/", content)
    assert page.status == 200 and ca.certificate.fingerprint(hashes.SHA256()).hex(":").upper().encode() in page.body
    assert answer("GET", "/ca.pem", content).headers["Content-Type"] == PEM_TYPE
    assert answer("GET", "/ca.der?x=1", content).headers["Content-Type"] == DER_TYPE
    assert answer("GET", "/ca.key", content).status == 404
    assert answer("DELETE", "/ca.pem", content).status == 405
    assert answer("GET", "/ca.pem", None).status == 404


def test_enrolment_page_has_a_qr_code_of_the_download_link(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "ca")
    content = EnrolmentContent.for_ca(ca.certificate)
    page = answer("GET", "/", content, "192.168.1.10:8079").body.decode()
    assert "<svg" in page and "<path" in page
    # The QR encodes the link; without a usable Host there is no QR, and no injected markup.
    assert "<svg" not in answer("GET", "/", content, None).body.decode()
    hostile = answer("GET", "/", content, 'x"><script>alert(1)</script>').body.decode()
    assert "<script>" not in hostile and "<svg" not in hostile
