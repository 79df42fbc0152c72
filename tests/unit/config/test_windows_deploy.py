"""Issue 12 point 5: the Windows service files agree with the CLI and keep state under ProgramData."""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path, PureWindowsPath

import yaml

from gateway.cli import build_parser
from gateway.config import parse_config

WINDOWS = Path(__file__).resolve().parents[3] / "deploy" / "windows"
DATA_DIR = PureWindowsPath(r"C:\ProgramData\TlsGateway")


def _gateway_args(command_line: str) -> list[str]:
    """The arguments after `-m gateway` (posix=False keeps Windows back-slashes)."""
    words = [w.strip('"') for w in shlex.split(command_line, posix=False)]
    assert words[:2] == ["-m", "gateway"], words
    return words[2:]


def test_winsw_service_runs_the_gateway_with_the_programdata_config() -> None:
    service = ET.parse(WINDOWS / "tls-gateway.xml").getroot()
    assert service.tag == "service" and service.findtext("id") == "tls-gateway"
    executable = PureWindowsPath(service.findtext("executable") or "")
    assert executable.name == "python.exe" and executable.parent.name == "Scripts"
    args = build_parser().parse_args(_gateway_args(service.findtext("arguments") or ""))
    assert args.command == "run"
    assert PureWindowsPath(str(args.config)) == DATA_DIR / "gateway.yaml"
    assert PureWindowsPath(service.findtext("logpath") or "") == DATA_DIR / "logs"
    assert PureWindowsPath(service.findtext("workingdirectory") or "") == DATA_DIR
    assert service.find("onfailure").get("action") == "restart"  # type: ignore[union-attr]


def test_example_config_parses_and_keeps_state_and_logs_under_programdata() -> None:
    raw = yaml.safe_load((WINDOWS / "gateway.yaml").read_text(encoding="utf-8"))
    assert PureWindowsPath(raw["state_dir"]) == DATA_DIR / "state"
    assert PureWindowsPath(raw["log"]["file"]).parent == DATA_DIR / "logs"
    cfg = parse_config(raw, Path("/tmp/gateway.yaml"))
    for base in cfg.bases:  # the legacy server is bound to loopback: nothing reaches it around the gateway
        for _, endpoint in base.endpoints():
            assert endpoint.backend_host == "127.0.0.1"


def test_install_script_matches_the_service_and_the_cli() -> None:
    script = (WINDOWS / "install-service.ps1").read_text(encoding="utf-8")
    assert re.search(r'\$DataDir = "C:\\ProgramData\\TlsGateway"', script)
    assert re.search(r'\$InstallDir = "C:\\Program Files\\TlsGateway"', script)
    service = ET.parse(WINDOWS / "tls-gateway.xml").getroot()
    assert PureWindowsPath(service.findtext("executable") or "") == PureWindowsPath(
        r"C:\Program Files\TlsGateway") / "venv" / "Scripts" / "python.exe"
    # Every gateway command the script runs is one the CLI accepts.
    calls = re.findall(r"& \$VenvPython -m gateway (.+)", script)
    assert {c.split()[-1] for c in calls} >= {"check", "status"}
    parser = build_parser()
    for call in calls:
        parsed = parser.parse_args(call.replace("$Config", "gateway.yaml").split())
        assert parsed.func is not None
    assert "netsh advfirewall firewall add rule" in script and "dir=in action=allow protocol=TCP" in script
    assert '"$ServiceId.exe") install' in script.replace("(Join-Path $InstallDir ", "")
    uninstall = (WINDOWS / "uninstall-service.ps1").read_text(encoding="utf-8")
    for rule in re.findall(r'add rule name="([^"]+)"', script):
        assert f'delete rule name="{rule}"' in uninstall
    assert "-RemoveData" in uninstall or "$RemoveData" in uninstall
