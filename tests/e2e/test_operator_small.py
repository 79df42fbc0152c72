"""Issue 12 point 9: iplist test --base by name with each bad line once, `run` says where it logs,
a fixed key password file is picked up without saving the configuration."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization

from gateway.certs.authority import create_ca, issue_server_certificate
from tests.harness import _env, free_port, gateway_config, run_gateway_command


def test_iplist_test_takes_a_base_name_and_warns_once(tmp_path: Path) -> None:
    server = tmp_path / "bases" / "b1" / "Server"
    server.mkdir(parents=True)
    (server / "whitelist.dat").write_text("10.0.0.1\nсклад-пк\n", encoding="utf-8")
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump({
        "state_dir": "./state", "bases": [{"id": "b1", "name": "Магазин 15", "folder": "bases/b1",
                                           "data": {"listen": free_port(), "backend": "http://127.0.0.1:1"}}],
    }, allow_unicode=True), encoding="utf-8")
    done = run_gateway_command(tmp_path, "iplist", "test", "10.0.0.1", "--base", "магазин 15")
    assert done.returncode == 0, done.stderr
    assert "base 'Магазин 15' (b1): 10.0.0.1 allowed" in done.stdout
    assert (done.stdout + done.stderr).count("склад-пк") == 1
    unknown = run_gateway_command(tmp_path, "iplist", "test", "10.0.0.1", "--base", "Магазин 16")
    assert unknown.returncode == 2 and "b1 (Магазин 15)" in unknown.stderr


def test_run_with_a_log_file_says_where_it_logs(tmp_path: Path, standin) -> None:
    config = gateway_config(tmp_path, standin, log={"file": "logs/gateway.log"})
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "gateway", "-c", "gateway.yaml", "run"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True)
    try:
        log = tmp_path / "logs" / "gateway.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "gateway ready" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.1)
    finally:
        process.terminate()
        out, err = process.communicate(timeout=20)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1 and f"logging to {log}" in lines[0], out + err


def test_fixed_key_password_file_is_picked_up(tmp_path: Path, standin, gateway_factory) -> None:
    certs = tmp_path / "certs"
    ca = create_ca(certs)
    leaf, key = issue_server_certificate(ca, ["localhost"], [ipaddress.ip_address("127.0.0.1")])
    (certs / "gw.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (certs / "gw.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.BestAvailableEncryption(b"right-one")))
    password = certs / "key.pass"
    password.write_text("wrong-one\n")
    config = gateway_config(tmp_path, standin)
    gw = gateway_factory(config)
    tls = {"cert": str(certs / "gw.pem"), "key": str(certs / "gw.key"), "password_file": str(password)}
    gw.reload(dict(config, tls=tls), expect=r"reload refused.*wrong password", timeout=15)
    gw.mark_log()
    password.write_text("right-one\n")  # fixed in its file only; the configuration is not saved again
    gw.wait_for_log(r"configuration reloaded", timeout=15)
