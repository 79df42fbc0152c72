"""Found walking the README as a new user, with the features of several issues together.

Each test runs the real gateway process and the real CLI against it.
"""

from __future__ import annotations

import copy
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import yaml

from gateway.ops.portowner import PortOwner
from tests.harness import RunningGateway, Standin, _env, free_port, gateway_config, run_gateway_command


def test_reload_says_a_changed_worker_count_waits_for_a_restart(
        tmp_path: Path, standin: Standin, gateway_factory: Callable[..., RunningGateway]) -> None:
    # `workers` is read by `gateway run` once; a reload answering just "applied" claimed otherwise.
    config = gateway_config(tmp_path, standin)
    gw = gateway_factory(config)
    changed: dict[str, Any] = copy.deepcopy(config)
    changed["workers"] = 2
    gw.write_config(changed)

    done = run_gateway_command(gw.directory, "reload")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "workers changed: takes effect only after a restart" in done.stdout
    gw.wait_for_log(r"workers changed in the configuration; this takes effect only after a restart")
    status = run_gateway_command(gw.directory, "status")
    assert status.returncode == 0, status.stderr
    assert "(supervisor)" not in status.stdout  # still the one process it started as
    assert "takes effect only after a restart" in status.stdout


def test_reload_of_an_invalid_file_exits_2_and_keeps_serving(
        tmp_path: Path, standin: Standin, gateway_factory: Callable[..., RunningGateway]) -> None:
    # The README's exit codes: the command reads the file first and asks nothing of the gateway.
    config = gateway_config(tmp_path, standin)
    gw = gateway_factory(config)
    broken: dict[str, Any] = copy.deepcopy(config)
    broken["bases"][0]["print"]["listen"] = broken["bases"][0]["data"]["listen"]
    gw.write_config(broken)

    done = run_gateway_command(gw.directory, "reload")

    assert done.returncode == 2, done.stdout + done.stderr
    assert "bases[0].print.listen" in done.stderr
    assert "keeps its current configuration" in done.stderr
    assert gw.process.poll() is None


def test_readyz_of_workers_names_a_deleted_state_folder(
        tmp_path: Path, standin: Standin, gateway_factory: Callable[..., RunningGateway]) -> None:
    # The supervisor found its workers' admin ports in their run files, which live in the state
    # folder: once it was deleted, /readyz said "its admin listener is not known yet" instead of why.
    admin_port = free_port()
    config = gateway_config(tmp_path, standin, workers=2,
                            admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port})
    gw = gateway_factory(config)
    shutil.rmtree(gw.state_dir)
    gw.wait_for_log(r"event=state-lost", timeout=15)

    answer = httpx.get(f"http://127.0.0.1:{admin_port}/readyz", timeout=10)

    assert answer.status_code == 503
    assert "not known yet" not in answer.text
    assert "state folder" in answer.text and "deleted" in answer.text, answer.text


def test_check_does_not_take_the_ports_of_a_gateway_started_without_c_for_its_own(
        tmp_path: Path, standin: Standin) -> None:
    # `make run` starts `gateway demo` with no -c; a bare `gateway run` reads ./gateway.yaml. Their
    # ports counted as "this configuration's own" for every other configuration's `check`.
    first = tmp_path / "first"
    first.mkdir()
    config = gateway_config(first, standin)
    (first / "gateway.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    log = open(first / "gateway.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "gateway", "run"], cwd=first, env=_env(),
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "gateway ready" not in (first / "gateway.log").read_text(errors="replace"):
            assert process.poll() is None and time.monotonic() < deadline, (first / "gateway.log").read_text()
            time.sleep(0.1)
        second = tmp_path / "second"
        second.mkdir()
        (second / "gateway.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

        done = run_gateway_command(second, "check")

        port = config["bases"][0]["data"]["listen"]
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"port {port} is held by another gateway (pid {process.pid}, configuration " \
               f"{first / 'gateway.yaml'})" in done.stdout
        # ... while the first configuration's own check still sees them as its own.
        assert run_gateway_command(first, "check").returncode == 0
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def test_a_demo_without_options_serves_the_demo_configuration() -> None:
    cwd = Path(__file__).resolve().parents[2]
    owner = PortOwner(1, "python", (".venv/bin/python", "-m", "gateway", "demo"), str(cwd))
    assert owner.config_path() == cwd / "demo" / "gateway.yaml"
    named = PortOwner(1, "python", ("python", "-m", "gateway", "demo", "--demo-config", "x.yaml"), "/srv")
    assert named.config_path() == Path("/srv/x.yaml")


def test_workers_with_a_log_file_say_once_where_they_log(
        tmp_path: Path, standin: Standin, gateway_factory: Callable[..., RunningGateway]) -> None:
    # Each worker is a `gateway run --worker N` sharing the terminal: each printed the line too.
    config = gateway_config(tmp_path, standin, workers=2, log={"file": "logs/gateway.log"})
    gw = gateway_factory(config, wait=False)
    log_file = gw.directory / "logs" / "gateway.log"
    deadline = time.monotonic() + 40
    while not (log_file.exists() and "gateway ready: 2 worker(s)" in log_file.read_text(errors="replace")):
        assert gw.process.poll() is None and time.monotonic() < deadline, gw.log()
        time.sleep(0.1)

    terminal = gw.log()
    assert terminal.count("gateway: logging to") == 1, terminal


def test_http2_heads_meet_the_same_target_and_header_count_limits_as_http1(
        tmp_path: Path, standin: Standin, gateway_factory: Callable[..., RunningGateway]) -> None:
    # Over HTTP/1.1 a 9,000-byte target got 414 and 120 headers 431; over HTTP/2 both reached the back end.
    gw = gateway_factory(gateway_config(tmp_path, standin))
    long_target = "/echo?x=" + "a" * 9000
    many = [(f"X-H{i}", "v") for i in range(120)]
    trust = ssl.create_default_context(cafile=gw.ca_file)
    with httpx.Client(http2=True, verify=trust, timeout=20) as h2, httpx.Client(verify=trust, timeout=20) as h1:
        for client, version in ((h2, "HTTP/2"), (h1, "HTTP/1.1")):
            too_long = client.get(gw.url("b1", path=long_target))
            assert (too_long.http_version, too_long.status_code) == (version, 414)
            too_many = client.get(gw.url("b1", path="/echo"), headers=many)
            assert (too_many.http_version, too_many.status_code) == (version, 431)
        within = h2.get(gw.url("b1", path="/echo?x=" + "a" * 4000), headers=many[:50])
        assert (within.http_version, within.status_code) == ("HTTP/2", 200)
        assert len(within.json()["query"]) > 4000


def test_windows_install_folders_reach_the_service_and_its_configuration() -> None:
    # install-service.ps1 takes -InstallDir and -DataDir, but copied the WinSW file as shipped:
    # the service then started C:\Program Files\...\python.exe with C:\ProgramData\... whatever was asked.
    import re
    import xml.etree.ElementTree as ET
    from pathlib import PureWindowsPath

    windows = Path(__file__).resolve().parents[2] / "deploy" / "windows"
    script = (windows / "install-service.ps1").read_text(encoding="utf-8")
    assert not re.search(r"Copy-Item[^\n]*(\$ServiceId\.xml|gateway\.yaml)", script)
    assert 'Copy-WithFolders (Join-Path $PSScriptRoot "$ServiceId.xml")' in script
    assert 'Copy-WithFolders (Join-Path $PSScriptRoot "gateway.yaml") $Config' in script
    replace = re.search(r'\.Replace\("([^"]+)", \$InstallDir\)\.Replace\("([^"]+)", \$DataDir\)', script)
    assert replace is not None
    install_default, data_default = replace.groups()

    def installed(name: str) -> str:  # what Copy-WithFolders writes, for D:\GW and E:\GWData
        text = (windows / name).read_text(encoding="utf-8")
        return text.replace(install_default, r"D:\GW").replace(data_default, r"E:\GWData")

    service = ET.fromstring(installed("tls-gateway.xml"))
    assert PureWindowsPath(service.findtext("executable") or "") == PureWindowsPath(r"D:\GW\venv\Scripts\python.exe")
    assert r'-c "E:\GWData\gateway.yaml" run' in (service.findtext("arguments") or "")
    assert service.findtext("logpath") == r"E:\GWData\logs"
    config = yaml.safe_load(installed("gateway.yaml"))
    assert config["state_dir"] == r"E:\GWData\state"
    assert config["log"]["file"] == r"E:\GWData\logs\gateway.log"


def test_check_names_a_taken_acme_challenge_port_that_would_stop_the_start(
        tmp_path: Path, standin: Standin) -> None:
    # `gateway run` refused to start ("acme.challenge_listen: cannot listen …") while `check` said OK.
    import socket

    challenge = free_port()
    config = gateway_config(tmp_path, standin, acme={
        "enabled": True, "directory": "https://127.0.0.1:9/dir", "allow_private": True,
        "challenge_listen": challenge})
    config["bases"][0]["tls"] = {"acme": ["127.0.0.1"]}
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", challenge))
        holder.listen(1)
        done = run_gateway_command(tmp_path, "check")
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("ACME challenge listener"))
    assert f"http://127.0.0.1:{challenge}" in line
    assert f"acme.challenge_listen: port {challenge} is taken by another program" in line

    done = run_gateway_command(tmp_path, "check")
    assert f"ACME challenge listener — http://127.0.0.1:{challenge} — OK" in done.stdout, done.stdout


def test_a_command_without_c_in_the_repository_points_at_the_demo_configuration() -> None:
    # README: while `make run` runs, commands need -c demo/gateway.yaml; without it a new user
    # in the repository folder only heard "gateway.yaml: file not found".
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "gateway", "user", "list"], cwd=repo, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "gateway.yaml: file not found" in done.stderr
    assert "-c demo/gateway.yaml" in done.stderr


def test_acme_renew_takes_a_base_by_name_as_iplist_test_does(tmp_path: Path, standin: Standin) -> None:
    # `--base "Acme Base"` answered "base 'Acme Base' has no tls.acme" about a base that has it.
    config = gateway_config(tmp_path, standin, acme={
        "enabled": True, "directory": f"https://127.0.0.1:{free_port()}/dir", "allow_private": True,
        "challenge_listen": free_port()})
    config["bases"][0]["tls"] = {"acme": ["127.0.0.1"]}
    plain = {key: value for key, value in config["bases"][0].items() if key not in ("print", "tls")}
    config["bases"].append({**plain, "id": "b2", "name": "Plain", "folder": "bases/b2",
                            "data": {"listen": free_port(), "backend": standin.data_url}})
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    by_name = run_gateway_command(tmp_path, "cert", "acme", "renew", "--base", "магазин 15 вещевой, расширенный")
    assert by_name.returncode == 1, by_name.stdout + by_name.stderr
    assert "cannot reach the ACME directory" in by_name.stderr  # got as far as ordering

    plain = run_gateway_command(tmp_path, "cert", "acme", "renew", "--base", "Plain")
    assert plain.returncode == 2
    assert "base 'Plain' (b2) has no tls.acme" in plain.stderr
    unknown = run_gateway_command(tmp_path, "cert", "acme", "renew", "--base", "nope")
    assert unknown.returncode == 2
    assert "no base with id 'nope' (nor with that name)" in unknown.stderr
    assert "b1 (Магазин 15 Вещевой, Расширенный)" in unknown.stderr


def test_a_print_server_not_used_needs_no_port(tmp_path: Path, standin: Standin) -> None:
    # The seed's «Сервер печати используется» unticked is `print: {enabled: false}`; it answered
    # "bases[0].print.listen: is required".
    config = gateway_config(tmp_path, standin)
    config["bases"][0]["print"] = {"enabled": False}
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    done = run_gateway_command(tmp_path, "check", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    config["bases"][0]["print"] = {"enabled": False, "backend": standin.print_url}
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    done = run_gateway_command(tmp_path, "check")
    assert done.returncode == 2 and "bases[0].print.listen: is required" in done.stderr  # half a print server
