"""Issue 12 point 8: `cert import` asks for the PFX password on a terminal, --install edits the
configuration keeping its comments, and an incomplete chain is a warning."""

from __future__ import annotations

import ipaddress
import os
import pty
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from gateway.certs.authority import create_ca, issue_server_certificate
from gateway.config import load_config
from tests.harness import run_gateway_command

CONFIG = """# the shop's gateway — keep this comment
state_dir: ./state   # state next to this file
listen_host: 127.0.0.1

tls:
  min_version: "1.2"   # old terminals
  # cert: certs/server.pem
bases:
  - id: b1          # the main base
    name: One
    data: {listen: 18131, backend: "http://127.0.0.1:1"}
  - id: b2
    name: Two
    data: {listen: 18132, backend: "http://127.0.0.1:1"}
"""


def make_pfx(tmp_path: Path, with_chain: bool, password: bytes | None) -> Path:
    ca = create_ca(tmp_path / "ca")
    leaf, key = issue_server_certificate(ca, ["localhost"], [ipaddress.ip_address("127.0.0.1")])
    encryption = BestAvailableEncryption(password) if password else None
    from cryptography.hazmat.primitives.serialization import NoEncryption

    data = pkcs12.serialize_key_and_certificates(b"gw", key, leaf, [ca.certificate] if with_chain else None,
                                                 encryption or NoEncryption())
    path = tmp_path / "issued.pfx"
    path.write_bytes(data)
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "gateway.yaml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


def test_install_writes_tls_lines_and_keeps_comments(workdir: Path) -> None:
    pfx = make_pfx(workdir, with_chain=True, password=None)
    done = run_gateway_command(workdir, "cert", "import", str(pfx), "--install")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: the chain is incomplete" not in done.stdout
    text = (workdir / "gateway.yaml").read_text(encoding="utf-8")
    for comment in ("# the shop's gateway — keep this comment", "# state next to this file", "# old terminals",
                    "# the main base", "# cert: certs/server.pem"):
        assert comment in text
    cfg = load_config(workdir / "gateway.yaml")
    assert cfg.tls.cert is not None and cfg.tls.cert.exists() and cfg.tls.min_version == "1.2"

    per_base = run_gateway_command(workdir, "cert", "import", str(pfx), "--base", "b2", "--install")
    assert per_base.returncode == 0, per_base.stdout + per_base.stderr
    cfg = load_config(workdir / "gateway.yaml")
    b2 = cfg.base_by_id("b2")
    assert b2 is not None and b2.tls is not None and b2.tls.cert is not None and b2.tls.cert.exists()
    assert yaml.safe_load((workdir / "gateway.yaml").read_text())["bases"][0].get("tls") is None


def test_incomplete_chain_is_a_warning(workdir: Path) -> None:
    done = run_gateway_command(workdir, "cert", "import", str(make_pfx(workdir, with_chain=False, password=None)))
    assert done.returncode == 0
    assert "warning: the chain is incomplete" in done.stdout and "Add to the configuration" in done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_pfx_password_is_asked_on_a_terminal(workdir: Path) -> None:
    pfx = make_pfx(workdir, with_chain=True, password=b"Pfx-Secret-7")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command on a terminal, as a person runs it
        os.chdir(workdir)
        os.execv(sys.executable, [sys.executable, "-m", "gateway", "-c", "gateway.yaml", "cert", "import", str(pfx)])
    output = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"Password for" in output:
            os.write(fd, b"Pfx-Secret-7\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    text = output.decode("utf-8", "replace")
    assert answered, text
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "Installed" in text and "Pfx-Secret-7" not in text.split("Password for", 1)[1]
