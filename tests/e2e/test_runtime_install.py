"""Issue 23 point 7: the runtime-only install a server gets (`make install PREFIX=...`): a venv
with the gateway copied in (not editable, no test tools) that runs without the checkout, and the
systemd unit pointing at what that install really puts on disk.

The install reads packages from the machine's package index and pip cache only (pip's own
configuration), like `make .venv/.installed` does.
"""

from __future__ import annotations

import configparser
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gateway.cli import build_parser
from tests.harness import free_port

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "gateway.service"
# What a runtime install needs from a checkout; the copy also proves nothing else is read.
SOURCES = ("pyproject.toml", "README.md", "Makefile", "scripts", "gateway", "addons", "policies")


def _unit() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser["Service"]


def _make_default(name: str) -> str:
    for line in (REPO / "Makefile").read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{name} ?="):
            return line.split("?=", 1)[1].strip()
    raise AssertionError(f"the Makefile sets no default {name}")


def test_the_unit_runs_what_make_install_puts_in_place() -> None:
    service = _unit()
    command = service["ExecStart"].split()
    assert command[0] == f"{_make_default('PREFIX')}/venv/bin/gateway"
    args = build_parser().parse_args(command[1:])
    assert args.command == "run"
    # Configuration, state and logs in the folders systemd creates for the unit, outside any checkout.
    assert service["ConfigurationDirectory"] == service["StateDirectory"] == service["LogsDirectory"] == "gateway"
    assert Path(str(args.config)) == Path("/etc/gateway/gateway.yaml")
    assert service["WorkingDirectory"] == "/var/lib/gateway"
    assert service["StateDirectoryMode"] == "0700" and service["UMask"] == "0077"
    assert service["ProtectSystem"] == "strict" and service["User"] != "root"
    text = UNIT.read_text(encoding="utf-8")
    assert "tls-gateway.yaml" not in text and "/var/lib/tls-gateway" not in text and "/etc/tls-gateway" not in text
    assert "make install PREFIX=/opt/tls-gateway" in text and "state_dir: /var/lib/gateway" in text


def test_operator_files_in_a_checkout_are_ignored_by_git(tmp_path: Path) -> None:
    """`git add -A` in a checkout where someone followed "Running it for real" must not pick up keys."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(REPO / ".gitignore", checkout / ".gitignore")
    secrets = ["gateway.yaml", "state/ca.key", "state/auth-hmac.key", "state/gateway.db", "state/gateway.db-wal",
               "state/certs/server.pem", "logs/gateway.log", ".gateway.yaml.state.json", "certs/server.key"]
    for name in secrets:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text("secret\n", encoding="utf-8")
    (checkout / "kept.txt").write_text("ok\n", encoding="utf-8")
    git = ["git", "-c", "init.defaultBranch=main", "-C", str(checkout)]
    subprocess.run([*git, "init", "-q"], check=True, timeout=30)
    subprocess.run([*git, "add", "-A"], check=True, timeout=30)
    staged = subprocess.run([*git, "diff", "--cached", "--name-only"], check=True, timeout=30,
                            capture_output=True, text=True).stdout.split()
    assert sorted(staged) == [".gitignore", "kept.txt"]


@pytest.mark.timeout(900)
def test_make_install_gives_a_runtime_only_venv_that_runs_without_the_checkout(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    source = tmp_path / "checkout"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, source / name)
    prefix = tmp_path / "opt" / "tls-gateway"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_NO_CACHE_DIR")}
    env.setdefault("PYTHON", sys.executable)  # the interpreter this suite runs on, as find-python.sh would pick
    done = subprocess.run(["make", "-C", str(source), "install", f"PREFIX={prefix}"], env=env, timeout=840,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    python = prefix / "venv" / "bin" / "python"
    gateway = prefix / "venv" / "bin" / "gateway"
    shutil.rmtree(source)  # the service must not need the checkout it was installed from

    # A copy, not a link back to the source; the test tools stay out of a server's venv.
    probe = ("import importlib.metadata as m, importlib.util as u, json, gateway\n"
             "d = m.distribution('tls-gateway')\n"
             "print(json.dumps({'file': gateway.__file__, 'direct_url': d.read_text('direct_url.json'),\n"
             "                  'pytest': u.find_spec('pytest') is not None}))\n")
    info = json.loads(subprocess.run([str(python), "-c", probe], env=env, cwd=tmp_path, timeout=60,
                                     capture_output=True, text=True, check=True).stdout)
    assert Path(info["file"]).is_relative_to(prefix / "venv" / "lib")
    assert '"editable": true' not in (info["direct_url"] or "")
    assert info["pytest"] is False
    assert (prefix / "venv" / "share" / "tls-gateway" / "policies" / "default.yaml").is_file()

    helped = subprocess.run([str(gateway), "--help"], env=env, cwd=tmp_path, timeout=60,
                            capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and "usage: gateway" in helped.stdout

    # `gateway check` on a minimal configuration with one base whose back end answers.
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "opt"))
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    try:
        config = tmp_path / "etc" / "gateway.yaml"
        config.parent.mkdir()
        config.write_text(
            f"state_dir: {tmp_path / 'var'}\nadmin:\n  enabled: false\nbases:\n"
            f"  - id: shop15\n    name: Shop 15\n    https: false\n"
            f"    data: {{listen: {free_port()}, backend: 'http://127.0.0.1:{backend.server_address[1]}'}}\n",
            encoding="utf-8")
        checked = subprocess.run([str(gateway), "-c", str(config), "check"], env=env, cwd=tmp_path, timeout=120,
                                 capture_output=True, text=True, check=False)
    finally:
        backend.shutdown()
        backend.server_close()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Shop 15" in checked.stdout and "OK" in checked.stdout

    # systemd's own reading of the unit, pointed at this install.
    if shutil.which("systemd-analyze"):
        unit = tmp_path / "gateway.service"
        unit.write_text(UNIT.read_text(encoding="utf-8").replace(_make_default("PREFIX"), str(prefix)), encoding="utf-8")
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], timeout=60,
                                  capture_output=True, text=True, check=False)
        assert verified.returncode == 0 and "gateway.service" not in verified.stderr, verified.stderr
