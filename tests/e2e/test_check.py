"""`gateway check`: one status line per base with the real reason, exit 0 only when all is well."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.cli import main
from gateway.ops.health import RunInfo, gateway_ports, listen_problem, write_run_file
from tests.harness import RunningGateway, Standin, base_entry, free_port, gateway_config, run_gateway_command


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["-c", str(path), "check", "--timeout", "0.5", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def unused_port() -> int:
    # Bound and closed: nothing listens there, so a connect is refused.
    return free_port()


def make_cert(folder: Path, names: list[str], *, days: int = 30, expired: bool = False,
              wrong_key: bool = False) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (now - datetime.timedelta(days=60), now - datetime.timedelta(days=1)) if expired else \
        (now - datetime.timedelta(days=1), now + datetime.timedelta(days=days))
    san: list[x509.GeneralName] = []
    for name in names:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            san.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(san), critical=False).sign(key, hashes.SHA256()))
    served_key = ec.generate_private_key(ec.SECP256R1()) if wrong_key else key
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "server.pem", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(served_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def config(tmp_path: Path, standin: Standin) -> dict[str, Any]:
    return gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", "Склад 1")])


def test_all_well_prints_ok_and_exits_0(tmp_path: Path, config: dict[str, Any],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = check(write_config(tmp_path, config), capsys)
    port = config["bases"][0]["data"]["listen"]
    assert out.strip() == f"Склад 1 — https://127.0.0.1:{port} — OK"
    assert code == 0


def test_broken_configuration_names_the_key(tmp_path: Path, config: dict[str, Any],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config["bases"].append({**config["bases"][0], "id": "b2", "name": "Second"})
    code, out, err = check(write_config(tmp_path, config), capsys)
    assert code == 2
    assert "bases[1].data.listen" in err and "already used by base 'Склад 1'" in err
    assert "Traceback" not in err


def test_unreachable_back_end_is_named(tmp_path: Path, config: dict[str, Any],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{unused_port()}"
    config["bases"][0]["data"]["backend"] = dead
    code, out, _ = check(write_config(tmp_path, config), capsys)
    assert code == 1
    assert f"back end {dead} not reachable (connection refused)" in out


def test_port_taken_by_another_program(tmp_path: Path, config: dict[str, Any],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    port = config["bases"][0]["data"]["listen"]
    with socket.create_server(("127.0.0.1", port)):
        code, out, _ = check(write_config(tmp_path, config), capsys)
    assert code == 1
    assert f"port {port} is taken by another program" in out


def test_bad_whitelist_line_is_reported_with_its_number(tmp_path: Path, config: dict[str, Any],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    server = tmp_path / "bases" / "b1" / "Server"
    server.mkdir(parents=True)
    lines = ["10.0.0.1", "", "# comment", "10.0.0.0/8", "192.168.1.1-192.168.1.9", "::1", "склад-пк", "10.1.1.1"]
    (server / "whitelist.dat").write_text("\r\n".join(lines), encoding="utf-8-sig")
    code, out, _ = check(write_config(tmp_path, config), capsys)
    assert code == 1
    assert "whitelist.dat line 7: 'склад" in out


@pytest.mark.parametrize(("kind", "expected"), [
    ("expired", "expired on "),
    ("wrong_key", "key does not match"),
    ("other_name", "does not cover 127.0.0.1"),
])
def test_certificate_problems(tmp_path: Path, config: dict[str, Any], capsys: pytest.CaptureFixture[str],
                              kind: str, expected: str) -> None:
    names = ["shop.example.test"] if kind == "other_name" else ["127.0.0.1", "localhost"]
    cert, key = make_cert(tmp_path / "certs", names, expired=kind == "expired", wrong_key=kind == "wrong_key")
    config["bases"][0]["tls"] = {"cert": str(cert), "key": str(key)}
    code, out, _ = check(write_config(tmp_path, config), capsys)
    assert code == 1
    assert expected in out
    # The URL names what the certificate covers (issue 23 point 11): it can be opened as shown.
    host = "shop.example.test" if kind == "other_name" else "127.0.0.1"
    assert out.startswith(f"Склад 1 — https://{host}:")


def test_json_lists_every_base(tmp_path: Path, standin: Standin, config: dict[str, Any],
                               capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{unused_port()}"
    config["bases"].append(base_entry(standin, "b2", "Dead", data={"listen": free_port(), "backend": dead}))
    code, out, _ = check(write_config(tmp_path, config), capsys, "--json")
    statuses = json.loads(out)
    assert code == 1
    assert [(s["base"], s["ok"]) for s in statuses] == [("b1", True), ("b2", False)]
    assert statuses[1]["problems"] == [f"back end {dead} not reachable (connection refused)"]


def test_port_held_by_a_live_gateway_is_not_taken(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        assert listen_problem("127.0.0.1", port, set()).startswith(f"port {port} is taken by another program")
        write_run_file(tmp_path, RunInfo(pid=4242, ports=(port,)))
        assert gateway_ports(tmp_path, alive=lambda pid: pid == 4242) == {port}
        assert listen_problem("127.0.0.1", port, gateway_ports(tmp_path, alive=lambda pid: True)) is None
        # A run file left behind by a gateway that died proves nothing.
        assert gateway_ports(tmp_path, alive=lambda pid: False) == set()


def test_check_while_the_gateway_runs(standin: Standin, gateway_factory: Callable[..., RunningGateway],
                                      tmp_path: Path) -> None:
    config = gateway_config(tmp_path, standin, admin={"enabled": True, "host": "127.0.0.1", "listen": free_port()})
    gw = gateway_factory(config)
    result = run_gateway_command(gw.directory, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("— OK") == 2  # the base and the admin listener
    assert "taken" not in result.stdout
