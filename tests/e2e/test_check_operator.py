"""Issue 12 points 7 and 9: bypass warning, one problem per line, port owners, tab errors."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import yaml

from gateway.ops.health import listen_problem
from tests.harness import free_port, run_gateway_command


def write(tmp_path: Path, backend_port: int, listen: int | None = None) -> Path:
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump({
        "state_dir": "./state", "listen_host": "127.0.0.1", "admin": {"enabled": False},
        "bases": [{"id": "b1", "name": "Склад", "https": False,
                   "data": {"listen": listen or free_port(), "backend": f"http://127.0.0.1:{backend_port}"}}],
    }, allow_unicode=True), encoding="utf-8")
    return tmp_path


def test_backend_open_on_every_address_is_a_bypass_warning(tmp_path: Path) -> None:
    # Bound on every address like a legacy server left at its defaults; nothing is sent to it
    # except check's own connect to 127.0.0.1.
    with socket.create_server(("0.0.0.0", 0)) as legacy:
        port = legacy.getsockname()[1]
        done = run_gateway_command(write(tmp_path, port), "check")
    assert done.returncode == 0, done.stdout  # a warning, not a failure
    assert f"warning: back end port {port} also accepts connections on every address (0.0.0.0:{port})" in done.stdout
    assert "bind the legacy server to 127.0.0.1" in done.stdout


def test_backend_on_loopback_only_has_no_warning(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as legacy:
        done = run_gateway_command(write(tmp_path, legacy.getsockname()[1]), "check")
    assert done.returncode == 0 and "warning" not in done.stdout, done.stdout


def test_each_problem_on_its_own_line_and_the_port_holder_named(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        done = run_gateway_command(write(tmp_path, free_port(), listen=port), "check")
        problem = listen_problem("127.0.0.1", port, set())
    lines = done.stdout.splitlines()
    assert lines[0].endswith("2 problems:"), done.stdout
    assert lines[1].startswith(f"  - port {port} is taken by another program")
    assert lines[2].startswith("  - back end http://127.0.0.1:") and "not reachable" in lines[2]
    assert problem is not None and f"(pid {os.getpid()})" in problem  # the OS lets us name our own process


def test_yaml_tab_error_says_use_spaces(tmp_path: Path) -> None:
    (tmp_path / "gateway.yaml").write_text("state_dir: ./state\nbases:\n\t- id: b1\n", encoding="utf-8")
    done = run_gateway_command(tmp_path, "check")
    assert done.returncode == 2 and "line 3" in done.stderr and "use spaces" in done.stderr


def test_check_warns_clear_text_passwords_names_urls_the_certificate_covers_and_the_admin_scheme(
        tmp_path: Path) -> None:
    """Issue 23 point 11."""
    with socket.create_server(("127.0.0.1", 0)) as legacy:
        backend = f"http://127.0.0.1:{legacy.getsockname()[1]}"
        secure, clear, admin = free_port(), free_port(), free_port()
        (tmp_path / "gateway.yaml").write_text(yaml.safe_dump({
            "state_dir": "./state", "listen_host": "127.0.0.1",
            "admin": {"enabled": True, "host": "0.0.0.0", "listen": admin},
            "bases": [{"id": "s", "name": "Защищённый", "data": {"listen": secure, "backend": backend}},
                      {"id": "c", "name": "Открытый", "https": False, "user_auth": True,
                       "data": {"listen": clear, "backend": backend}}],
        }, allow_unicode=True), encoding="utf-8")
        made = run_gateway_command(tmp_path, "cert", "self-signed", "--name", "only.lan", "--replace")
        assert made.returncode == 0, made.stderr
        done = run_gateway_command(tmp_path, "check")
    out = done.stdout
    assert "https: false with user_auth: true: passwords and barcodes cross the network in clear text" in out
    # The certificate names only only.lan: the URL shown is one a client can open.
    assert f"Защищённый — https://only.lan:{secure}" in out, out
    assert f"Открытый — http://127.0.0.1:{clear}" in out
    assert f"admin listener — https://0.0.0.0:{admin}" in out
