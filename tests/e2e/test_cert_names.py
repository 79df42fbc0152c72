"""Issue 12 point 2: `cert self-signed --name/--ip` adds to what the certificate covered."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography import x509

from gateway.certs.inspect import names_of
from tests.harness import free_port, run_gateway_command, start_gateway


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump({
        "state_dir": "./state", "listen_host": "127.0.0.1", "tls": {"hosts": ["gw.shop.lan"]},
        "bases": [{"id": "b1", "name": "One", "data": {"listen": 18111, "backend": "http://127.0.0.1:1"}}],
    }), encoding="utf-8")
    return tmp_path


def covered(workdir: Path) -> tuple[list[str], list[str]]:
    pem = (workdir / "state" / "certs" / "server.pem").read_bytes()
    return names_of(x509.load_pem_x509_certificates(pem)[0])


def test_names_add_up_and_replace_starts_over(workdir: Path) -> None:
    first = run_gateway_command(workdir, "cert", "self-signed", "--name", "gw.shop.lan")
    assert first.returncode == 0, first.stderr
    dns, ips = covered(workdir)
    assert "gw.shop.lan" in dns and "localhost" in dns and "127.0.0.1" in ips

    second = run_gateway_command(workdir, "cert", "self-signed", "--name", "it02", "--ip", "10.20.30.40")
    assert second.returncode == 0, second.stderr
    assert "kept from the previous certificate" in second.stdout
    dns, ips = covered(workdir)
    assert {"gw.shop.lan", "localhost", "it02"} <= set(dns) and {"127.0.0.1", "10.20.30.40"} <= set(ips)
    assert "will not cover" not in second.stderr

    replaced = run_gateway_command(workdir, "cert", "self-signed", "--name", "only.lan", "--replace")
    assert replaced.returncode == 0
    for host, why in (("gw.shop.lan", "tls.hosts"), ("127.0.0.1", "the listen address"),
                      ("it02", "covered by the current certificate")):
        assert f"will not cover {host} ({why}" in replaced.stderr
    assert covered(workdir) == (["only.lan"], [])

    check = run_gateway_command(workdir, "check")
    assert "fix: gateway -c" in check.stdout and "cert self-signed --name gw.shop.lan --ip 127.0.0.1" in check.stdout
    fix = check.stdout.split("fix: ")[1].split("\n")[0].split()
    assert run_gateway_command(workdir, *fix[3:]).returncode == 0
    dns, ips = covered(workdir)
    assert {"only.lan", "gw.shop.lan"} <= set(dns) and "127.0.0.1" in ips



def test_first_local_certificate_covers_tls_hosts_and_check_passes(tmp_path: Path) -> None:
    """Issue 23 point 12: the generated certificate names tls.hosts from the start."""
    config = {"state_dir": "./state", "listen_host": "127.0.0.1", "admin": {"enabled": False}, "workers": 1,
              "tls": {"hosts": ["gw.shop.lan", "10.20.30.40"]},
              "bases": [{"id": "b1", "name": "One", "data": {"listen": free_port(), "backend": "http://127.0.0.1:1"}}]}
    start_gateway(tmp_path, config).stop()
    dns, ips = covered(tmp_path)
    assert "gw.shop.lan" in dns and "10.20.30.40" in ips and "127.0.0.1" in ips
    check = run_gateway_command(tmp_path, "check")
    assert "fix: gateway -c" not in check.stdout and "will not cover" not in check.stdout + check.stderr
