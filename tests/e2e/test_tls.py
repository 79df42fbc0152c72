"""Real handshakes against a running gateway: trust, SNI, policy, hot swap, HSTS, enrolment."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.certs.authority import create_ca, issue_server_certificate, write_server_certificate
from tests.harness import RunningGateway, Standin, base_entry, free_port, gateway_config

LOOPBACK = [ipaddress.ip_address("127.0.0.1")]


def make_pair(folder: Path, name: str = "localhost", *, expired: bool = False) -> tuple[Path, Path, str]:
    """A CA-signed certificate for localhost/127.0.0.1 in ``folder``; returns cert, key, SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = create_ca(folder, common_name=f"Test CA {name}")
    now = datetime.datetime.now(datetime.timezone.utc) - (datetime.timedelta(days=10) if expired else datetime.timedelta())
    cert, key = issue_server_certificate(ca, [name], LOOPBACK, days=1 if expired else 30, now=now)
    cert_file, key_file = write_server_certificate(folder, ca, cert, key)
    return cert_file, key_file, cert.fingerprint(hashes.SHA256()).hex()


def peer_sha256(port: int, server_name: str | None = "localhost") -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def s_client_sha256(port: int, server_name: str | None) -> str:
    sni = ["-servername", server_name] if server_name else ["-noservername"]
    hello = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *sni],
                           input=b"", capture_output=True, timeout=20)
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
                         input=hello.stdout, capture_output=True, timeout=20)
    assert out.returncode == 0, hello.stdout.decode()[-2000:] + hello.stderr.decode()[-2000:]
    return out.stdout.decode().split("=", 1)[1].strip().replace(":", "").lower()


@pytest.fixture
def two_bases(standin: Standin, tmp_path: Path, gateway_factory: Callable[..., RunningGateway]) -> tuple[RunningGateway, str]:
    """b1 on the generated default certificate, b2 with its own certificate (fingerprint returned)."""
    cert, key, own_sha = make_pair(tmp_path / "b2certs", "localhost")
    config = gateway_config(tmp_path, standin, bases=[
        base_entry(standin, "b1", hsts=600),
        base_entry(standin, "b2", tls={"cert": str(cert), "key": str(key)}),
    ], enrolment={"enabled": True, "host": "127.0.0.1", "listen": free_port()})
    return gateway_factory(config), own_sha


def test_generated_ca_is_trusted_for_name_and_ip(two_bases: tuple[RunningGateway, str]) -> None:
    gw, _ = two_bases
    key = Path(gw.ca_file).with_name("ca.key")
    assert key.stat().st_mode & 0o077 == 0
    assert Path(gw.ca_file).with_name("server.key").stat().st_mode & 0o077 == 0
    for host in ("localhost", "127.0.0.1"):
        url = gw.url("b1", path="/api/v1/DocTypes").replace("127.0.0.1", host)
        response = httpx.get(url, verify=ssl.create_default_context(cafile=gw.ca_file))
        assert response.status_code < 500
    # verification is real: a name the certificate does not cover is refused
    with pytest.raises(httpx.ConnectError):
        httpx.get(gw.url("b1").replace("127.0.0.1", "127.0.0.2"), verify=ssl.create_default_context(cafile=gw.ca_file))
    assert "local CA" in gw.log() or "ca.pem" in gw.log()


def test_sni_and_no_sni_get_the_listeners_certificate(two_bases: tuple[RunningGateway, str]) -> None:
    gw, own_sha = two_bases
    # s_client offers ECDSA: the generated certificate's ECDSA twin answers (tests/e2e/test_tls_ecdsa.py)
    default_pem = (gw.state_dir / "certs" / "server-ecdsa.pem").read_bytes()
    default_sha = x509.load_pem_x509_certificates(default_pem)[0].fingerprint(
        hashes.SHA256()).hex()
    assert default_sha != own_sha
    for sni in ("localhost", None):
        assert s_client_sha256(gw.port("b1"), sni) == default_sha
        assert s_client_sha256(gw.port("b2"), sni) == own_sha
        assert s_client_sha256(gw.port("b2", "print"), sni) == own_sha


def test_policy_refuses_old_protocols_and_weak_ciphers(two_bases: tuple[RunningGateway, str]) -> None:
    """One sslyze scan: our own checks, then sslyze's Mozilla "intermediate" checker, which must
    find no exception — versions, ciphers, key-exchange groups (no secp521r1/X448: the gateway's
    openssl.cnf), DH size, certificate type/size/lifespan and the vulnerability probes."""
    from sslyze import Scanner, ServerNetworkLocation, ServerScanRequest, ServerScanStatusEnum
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER, MozillaTlsConfiguration, TlsConfigurationEnum,
        check_server_against_tls_configuration)
    from sslyze.plugins.certificate_info.implementation import CertificateInfoExtraArgument
    from sslyze.plugins.scan_commands import ScanCommand
    from sslyze.scanner.models import ScanCommandsExtraArguments

    gw, _ = two_bases
    scanner = Scanner()
    scanner.queue_scans([ServerScanRequest(
        server_location=ServerNetworkLocation("localhost", gw.port("b1"), "127.0.0.1"),
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER | {ScanCommand.ELLIPTIC_CURVES},
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=Path(gw.ca_file))))])
    [result] = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED
    attempts = result.scan_result
    assert attempts is not None

    def accepted(attempt: Any) -> list[str]:
        assert attempt.result is not None, attempt.error_reason
        return [s.cipher_suite.name for s in attempt.result.accepted_cipher_suites]

    for old in (attempts.ssl_2_0_cipher_suites, attempts.ssl_3_0_cipher_suites,
                attempts.tls_1_0_cipher_suites, attempts.tls_1_1_cipher_suites):
        assert accepted(old) == []
    tls12 = accepted(attempts.tls_1_2_cipher_suites)
    assert tls12, "TLS 1.2 must work for older terminals"
    for name in tls12:
        assert ("ECDHE" in name or "DHE" in name) and ("GCM" in name or "CHACHA20" in name), name
    assert accepted(attempts.tls_1_3_cipher_suites)
    assert attempts.tls_compression.result is not None
    assert not attempts.tls_compression.result.supports_compression

    # Raises ServerNotCompliantWithTlsConfiguration listing every deviation.
    check_server_against_tls_configuration(
        result, MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE))
    curves = attempts.elliptic_curves.result
    assert curves is not None
    assert sorted(c.name for c in curves.supported_curves) == ["X25519", "secp256r1", "secp384r1"]
    assert {c.name for c in curves.rejected_curves} >= {"secp521r1", "X448"}


def test_http2_is_negotiated_and_hsts_sent_per_base(two_bases: tuple[RunningGateway, str]) -> None:
    gw, _ = two_bases
    pytest.importorskip("h2")
    with httpx.Client(verify=ssl.create_default_context(cafile=gw.ca_file), http2=True) as client:
        r1 = client.get(gw.url("b1", path="/api/v1/DocTypes"))
        assert r1.http_version == "HTTP/2"
        assert r1.headers["strict-transport-security"] == "max-age=600"
    r2 = httpx.get(gw.url("b2", path="/api/v1/DocTypes"), verify=False)
    assert "strict-transport-security" not in r2.headers


def test_enrolment_serves_only_the_ca(two_bases: tuple[RunningGateway, str]) -> None:
    gw, _ = two_bases
    port = gw.config["enrolment"]["listen"]
    base = f"http://127.0.0.1:{port}"
    ca = x509.load_pem_x509_certificate(Path(gw.ca_file).read_bytes())
    pem = httpx.get(f"{base}/ca.pem")
    assert pem.headers["content-type"] == "application/x-pem-file"
    assert x509.load_pem_x509_certificate(pem.content) == ca
    der = httpx.get(f"{base}/ca.der")
    assert der.headers["content-type"] == "application/x-x509-ca-cert"
    assert x509.load_der_x509_certificate(der.content) == ca
    page = httpx.get(f"{base}/")
    assert ca.fingerprint(hashes.SHA256()).hex(":").upper() in page.text
    assert "<svg" in page.text  # QR code of the download link, for scanning from a device
    for path in ("/api/v1/DocTypes", "/ca.key", "/../state/certs/ca.key", "/server.key"):
        assert httpx.get(f"{base}{path}").status_code == 404
    assert httpx.post(f"{base}/ca.pem").status_code == 405


def _open_tls(port: int) -> ssl.SSLSocket:
    ctx = ssl._create_unverified_context()
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")


def _get_on(sock: ssl.SSLSocket) -> bytes:
    sock.sendall(b"GET /api/v1/DocTypes HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return sock.recv(4096).split(b"\r\n", 1)[0]


def test_hot_swap_keeps_open_connections_and_refuses_broken_files(
    two_bases: tuple[RunningGateway, str], tmp_path: Path,
) -> None:
    gw, old_sha = two_bases
    cert_file = Path(gw.config["bases"][1]["tls"]["cert"])
    key_file = Path(gw.config["bases"][1]["tls"]["key"])
    port = gw.port("b2")
    # The stand-in answers "Connection: close", so the connection held across the swap is one
    # whose handshake finished before it and whose request is sent after it.
    held = _open_tls(port)
    assert hashlib.sha256(held.getpeercert(binary_form=True) or b"").hexdigest() == old_sha

    new_cert, new_key, new_sha = make_pair(tmp_path / "replacement", "localhost")
    gw.mark_log()
    shutil.copyfile(new_key, key_file.with_suffix(".tmp"))
    shutil.copyfile(new_cert, cert_file.with_suffix(".tmp2"))
    key_file.with_suffix(".tmp").replace(key_file)
    cert_file.with_suffix(".tmp2").replace(cert_file)
    gw.wait_for_log(r"certificate .* replaced", timeout=10)
    assert peer_sha256(port) == new_sha
    assert _get_on(held) == b"HTTP/1.1 200 OK"
    held.close()

    # broken replacements: key of another certificate, then an expired certificate
    other_cert, other_key, _ = make_pair(tmp_path / "other", "localhost")
    gw.mark_log()
    shutil.copyfile(other_key, key_file)
    gw.wait_for_log(r"new certificate refused.*key does not match", timeout=10)
    assert peer_sha256(port) == new_sha
    expired_cert, expired_key, _ = make_pair(tmp_path / "expired", "localhost", expired=True)
    gw.mark_log()
    shutil.copyfile(expired_key, key_file)
    shutil.copyfile(expired_cert, cert_file)
    gw.wait_for_log(r"new certificate refused.*expired on", timeout=10)
    assert peer_sha256(port) == new_sha
    assert "PRIVATE KEY" not in gw.log()

