"""`gateway cert show` and `gateway check` warn about keys outside the Mozilla intermediate
profile (RSA 2048+ or ECDSA P-256/P-384)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from gateway.certs.inspect import describe, key_profile_problem
from tests.harness import run_gateway_command

KEYS = {
    "RSA 1024": lambda: rsa.generate_private_key(65537, 1024),
    "RSA 2048": lambda: rsa.generate_private_key(65537, 2048),
    "ECDSA secp256r1": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ECDSA secp384r1": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ECDSA secp521r1": lambda: ec.generate_private_key(ec.SECP521R1()),
    "Ed25519": lambda: ed25519.Ed25519PrivateKey.generate(),
}
IN_PROFILE = {"RSA 2048", "ECDSA secp256r1", "ECDSA secp384r1"}


def self_signed(key: object) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())  # type: ignore[attr-defined]
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, algorithm))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_key_type_and_size_against_the_profile(kind: str) -> None:
    view = describe([self_signed(KEYS[kind]())])
    assert view.key == kind
    problem = key_profile_problem(view.key)
    assert (problem is None) == (kind in IN_PROFILE)
    if problem:
        assert kind in problem and "Mozilla intermediate" in problem


def test_cert_show_and_check_warn(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    cert_file = tmp_path / "p521.pem"
    cert_file.write_bytes(self_signed(key).public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "gateway.yaml").write_text(
        f"state_dir: ./state\nadmin: {{enabled: false}}\ntls: {{cert: {cert_file}}}\n"
        "bases:\n  - {id: b1, name: B, data: {listen: 1, backend: 'http://127.0.0.1:9'}}\n")
    shown = run_gateway_command(tmp_path, "cert", "show", str(cert_file))
    assert "Key:         ECDSA secp521r1" in shown.stdout
    assert "WARNING: key ECDSA secp521r1 is outside the Mozilla intermediate TLS profile" in shown.stdout
    checked = run_gateway_command(tmp_path, "check")
    assert "ECDSA secp521r1 is outside the Mozilla intermediate TLS profile" in checked.stdout


def test_openssl_conf_is_set_before_openssl_loads_and_never_leaks_into_a_host_program() -> None:
    import os
    import subprocess
    import sys

    from gateway.ops.opensslconf import CONF_FILE
    from tests.harness import REPO

    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    probe = ("import os, sys; {pre}from gateway.ops.opensslconf import use_gateway_openssl_conf as use; "
             "print(use(), os.environ.get('OPENSSL_CONF'))")
    fresh = subprocess.run([sys.executable, "-c", probe.format(pre="")], capture_output=True, text=True,
                           cwd=REPO, env=env, timeout=30)
    assert fresh.stdout.split() == ["True", str(CONF_FILE)]
    loaded = subprocess.run([sys.executable, "-c", probe.format(pre="import cryptography.hazmat.bindings._rust; ")],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=30)
    assert loaded.stdout.split() == ["False", "None"]
    assert "Groups = X25519:prime256v1:secp384r1" in CONF_FILE.read_text()
