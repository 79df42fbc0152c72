"""The generated certificate pair on a running gateway (issue 22): clients that offer ECDSA get
the P-256 certificate, clients that offer only RSA get the RSA one, and every kind of client
verifies the chain to the local CA — openssl s_client, curl, Python ssl/httpx, Java."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Callable

import httpx
import pytest

from tests.harness import RunningGateway, Standin, base_entry, gateway_config


@pytest.fixture
def gw(standin: Standin, tmp_path: Path, gateway_factory: Callable[..., RunningGateway]) -> RunningGateway:
    return gateway_factory(gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1")]))


def served_key(gw: RunningGateway, *options: str) -> tuple[str, str]:
    """(key type and size, protocol) of what ``openssl s_client`` with ``options`` was served."""
    done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{gw.port('b1')}", "-servername",
                           "localhost", "-CAfile", gw.ca_file, "-verify_return_error", *options],
                          input=b"", capture_output=True, timeout=30)
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0 and "Verify return code: 0 (ok)" in out, out[-1500:] + done.stderr.decode()[-800:]
    key = next(line for line in out.splitlines() if line.startswith("Server public key is"))
    protocol = next(line.split(",")[1].strip() for line in out.splitlines() if line.startswith("New,"))
    return key.removeprefix("Server public key is ").strip(), protocol


def test_openssl_gets_ecdsa_when_offered_and_rsa_when_only_rsa_is(gw: RunningGateway) -> None:
    assert served_key(gw) == ("256 bit", "TLSv1.3")
    assert served_key(gw, "-tls1_2") == ("256 bit", "TLSv1.2")
    # a client whose signature algorithms are RSA only (TLS 1.3 and 1.2)
    assert served_key(gw, "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256") == ("2048 bit", "TLSv1.3")
    assert served_key(gw, "-tls1_2", "-sigalgs", "RSA+SHA256:RSA+SHA384") == ("2048 bit", "TLSv1.2")
    # an old terminal with RSA cipher suites only
    assert served_key(gw, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256") == ("2048 bit", "TLSv1.2")


def test_curl_and_python_clients_verify_and_get_answers(gw: RunningGateway) -> None:
    url = gw.url("b1", path="/api/v1/DocTypes").replace("127.0.0.1", "localhost")
    for extra in ([], ["--tlsv1.2", "--tls-max", "1.2"]):
        done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", gw.ca_file,
                               *extra, url], capture_output=True, text=True, timeout=30)
        assert done.stdout == "200", done.stderr
    with httpx.Client(verify=ssl.create_default_context(cafile=gw.ca_file)) as client:
        assert client.get(url).status_code == 200


JAVA_PROBE = """
import java.io.FileInputStream;
import java.net.URL;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class TlsProbe {
    public static void main(String[] args) throws Exception {
        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        try (FileInputStream in = new FileInputStream(args[0])) {
            trust.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext ssl = SSLContext.getInstance("TLS");
        ssl.init(null, tmf.getTrustManagers(), null);
        HttpsURLConnection c = (HttpsURLConnection) new URL(args[1]).openConnection();
        c.setSSLSocketFactory(ssl.getSocketFactory());
        int status = c.getResponseCode();
        X509Certificate leaf = (X509Certificate) c.getServerCertificates()[0];
        System.out.println(status + " " + leaf.getPublicKey().getAlgorithm());
    }
}
"""


@pytest.mark.skipif(shutil.which("java") is None, reason="no java on this machine (not a project dependency)")
def test_java_clients_connect_with_ecdsa_and_with_rsa_only_suites(gw: RunningGateway, tmp_path: Path) -> None:
    probe = tmp_path / "TlsProbe.java"
    probe.write_text(JAVA_PROBE, encoding="utf-8")
    url = gw.url("b1", path="/api/v1/DocTypes").replace("127.0.0.1", "localhost")
    for options, expected in (([], "200 EC"),
                              (["-Djdk.tls.client.protocols=TLSv1.2",
                                "-Djdk.tls.client.cipherSuites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], "200 RSA")):
        done = subprocess.run(["java", *options, str(probe), gw.ca_file, url], capture_output=True, text=True,
                              timeout=120)
        assert done.stdout.strip() == expected, done.stderr[-1500:]
