"""`gateway cert ...` as a person runs it: real processes, real files, one-line errors."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.certs.authority import create_ca, issue_server_certificate
from tests.harness import run_gateway_command

PFX_PASSWORD = "Pfx-Secret-42"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump({
        "state_dir": "./state", "listen_host": "127.0.0.1",
        "bases": [{"id": "b1", "name": "One", "data": {"listen": 18101, "backend": "http://127.0.0.1:1"}}],
    }), encoding="utf-8")
    return tmp_path


def issued(tmp_path: Path, days: int = 90) -> tuple[x509.Certificate, object, x509.Certificate]:
    ca = create_ca(tmp_path / "someca", common_name="Some CA")
    cert, key = issue_server_certificate(ca, ["gw.lan"], [ipaddress.ip_address("127.0.0.1")], days=days)
    return cert, key, ca.certificate


def test_self_signed_renewal_keeps_the_ca(workdir: Path) -> None:
    first = run_gateway_command(workdir, "cert", "self-signed", "--name", "gw.lan", "--ip", "10.1.2.3")
    assert first.returncode == 0, first.stderr
    assert "Created the local CA" in first.stdout
    ca_pem = (workdir / "state" / "certs" / "ca.pem").read_bytes()
    server_pem = (workdir / "state" / "certs" / "server.pem").read_bytes()
    second = run_gateway_command(workdir, "cert", "self-signed", "--name", "gw.lan", "--days", "30")
    assert second.returncode == 0 and "Kept the local CA" in second.stdout
    assert (workdir / "state" / "certs" / "ca.pem").read_bytes() == ca_pem
    assert (workdir / "state" / "certs" / "server.pem").read_bytes() != server_pem
    bad = run_gateway_command(workdir, "cert", "self-signed", "--ip", "gw.lan")
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "not an IP address" in bad.stderr


def test_request_then_import_with_the_requests_key(workdir: Path) -> None:
    made = run_gateway_command(workdir, "cert", "request", "--name", "gw.lan", "--ip", "127.0.0.1",
                               "--org", "Shop", "--out", "req")
    assert made.returncode == 0, made.stderr
    assert "gateway cert import" in made.stdout
    key = serialization.load_pem_private_key((workdir / "req" / "gateway.key").read_bytes(), None)
    csr = x509.load_pem_x509_csr((workdir / "req" / "gateway.csr").read_bytes())
    # the CA signs the request
    ca = create_ca(workdir / "theca")
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.certificate.subject)
            .public_key(csr.public_key()).serial_number(7).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=60))
            .add_extension(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, critical=False)
            .sign(ca.key, hashes.SHA256()))
    (workdir / "issued.cer").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    done = run_gateway_command(workdir, "cert", "import", "issued.cer", "--key", "req/gateway.key")
    assert done.returncode == 0, done.stderr
    assert "covers: 127.0.0.1" in done.stdout and "cert: " in done.stdout
    installed = (workdir / "state" / "certs" / "imported.pem").read_bytes()
    assert x509.load_pem_x509_certificates(installed)[0] == cert
    assert key is not None


def test_import_pfx_right_and_wrong_password(workdir: Path) -> None:
    cert, key, ca = issued(workdir)
    pfx = pkcs12.serialize_key_and_certificates(b"gw", key, cert, [ca],  # type: ignore[arg-type]
                                                serialization.BestAvailableEncryption(PFX_PASSWORD.encode()))
    (workdir / "gw.pfx").write_bytes(pfx)
    wrong = run_gateway_command(workdir, "cert", "import", "gw.pfx", "--password-stdin", input="nope\n")
    assert wrong.returncode != 0
    assert "wrong PFX password" in wrong.stderr and wrong.stderr.count("\n") == 1
    assert "Traceback" not in wrong.stderr
    right = run_gateway_command(workdir, "cert", "import", "gw.pfx", "--password-stdin", input=PFX_PASSWORD + "\r\n")
    assert right.returncode == 0, right.stderr
    assert PFX_PASSWORD not in right.stdout + right.stderr
    chain = x509.load_pem_x509_certificates((workdir / "state" / "certs" / "imported.pem").read_bytes())
    assert chain == [cert, ca]


@pytest.mark.parametrize("case, message", [
    ("mismatch", "key does not match"),
    ("expired", "expired on"),
    ("nokey", "no private key found"),
    ("garbage", "not a certificate"),
])
def test_import_refusals_are_one_line(workdir: Path, case: str, message: str) -> None:
    cert, key, _ = issued(workdir, days=1 if case == "expired" else 90)
    if case == "expired":
        ca = create_ca(workdir / "oldca")
        cert, key = issue_server_certificate(ca, ["gw.lan"], [], days=1,
                                             now=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=5))
    body = cert.public_bytes(serialization.Encoding.PEM)
    other = ec.generate_private_key(ec.SECP256R1()) if case == "mismatch" else key
    if case != "nokey":
        body += other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                                    serialization.NoEncryption())
    if case == "garbage":
        body = b"this is a word document"
    (workdir / "in.pem").write_bytes(body)
    result = run_gateway_command(workdir, "cert", "import", "in.pem")
    assert result.returncode != 0
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (workdir / "state" / "certs" / "imported.pem").exists()


def test_show_lists_the_fields_and_warnings(workdir: Path) -> None:
    made = run_gateway_command(workdir, "cert", "self-signed", "--name", "other.lan", "--replace")
    assert made.returncode == 0
    assert "will not cover 127.0.0.1 (the listen address)" in made.stderr
    shown = run_gateway_command(workdir, "cert", "show")
    assert shown.returncode == 0, shown.stderr
    for field in ("Holder:", "Issuer:", "Issued:", "Expires:", "days left", "SHA-256:", "local CA", "other.lan"):
        assert field in shown.stdout
    assert "does not cover 127.0.0.1" in shown.stdout
    cert, _, _ = issued(workdir, days=10)
    (workdir / "soon.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    soon = run_gateway_command(workdir, "cert", "show", "soon.pem")
    assert soon.returncode == 0 and "expires within 30 days" in soon.stdout
    missing = run_gateway_command(workdir, "cert", "show", "absent.pem")
    assert missing.returncode != 0 and "file missing" in missing.stderr


def test_internationalised_and_bad_names(tmp_path: Path) -> None:
    """Cyrillic names work (as their xn-- form); a name that is no DNS name is one clear line."""
    from gateway.certs.request import parse_names

    assert parse_names(["склад.рф", "*.Example.COM."]) == ["xn--80aiqe2a.xn--p1ai", "*.example.com"]
    from gateway.certs.load import CertError

    with pytest.raises(CertError, match="is not a DNS name"):
        parse_names(["bad name!"])


def test_import_by_base_name_installs_relative_paths_warns_devices_and_enrolment_stops_offering_the_ca(
        tmp_path: Path) -> None:
    """Issue 23 points 11 and 15: `cert import --base NAME --install`, the warning for devices that
    trust only the local CA, and an enrolment page that no longer offers a CA nothing serves."""
    from tests.harness import free_port, start_gateway

    enrol = free_port()
    config = {"state_dir": "./state", "listen_host": "127.0.0.1", "admin": {"enabled": False}, "workers": 1,
              "enrolment": {"enabled": True, "host": "127.0.0.1", "listen": enrol},
              "bases": [{"id": "b1", "name": "Склад Один", "data": {"listen": free_port(),
                                                                    "backend": "http://127.0.0.1:1"}}]}
    start_gateway(tmp_path, config).stop()  # the local CA and its certificate, as a first start makes them
    cert, key, _ = issued(tmp_path)
    (tmp_path / "site.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "site.key").write_bytes(key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    done = run_gateway_command(tmp_path, "cert", "import", "site.pem", "--key", "site.key", "--base", "склад один",
                               "--install")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "devices that trust only this gateway's local CA" in done.stdout
    written = yaml.safe_load((tmp_path / "gateway.yaml").read_text(encoding="utf-8"))
    tls = written["bases"][0]["tls"]
    assert not Path(tls["cert"]).is_absolute() and tls["cert"].startswith("state/certs/"), tls
    assert not Path(tls["key"]).is_absolute()
    wrong = run_gateway_command(tmp_path, "cert", "import", "site.pem", "--key", "site.key", "--base", "нет такого")
    assert wrong.returncode != 0 and "no base with id or name 'нет такого'" in wrong.stderr
    import httpx

    gw = start_gateway(tmp_path, written)
    try:
        page = httpx.get(f"http://127.0.0.1:{enrol}/", timeout=5)
        assert "does not serve a certificate of its local CA" in page.text
        assert httpx.get(f"http://127.0.0.1:{enrol}/ca.pem", timeout=5).status_code == 404
    finally:
        gw.stop()
