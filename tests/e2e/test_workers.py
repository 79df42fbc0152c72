"""`workers: 2`: a supervisor and two worker processes sharing the base ports, over real HTTPS.

Three gateway starts: shared state and the admin listener; reloads; a worker killed under load.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config, run_gateway_command

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL") or os.name != "posix", reason="workers need Linux")

Factory = Callable[..., RunningGateway]
PASSWORD, NEW_PASSWORD, WRONG = "Sklad2024x", "Novyi2025Y", "Wrong12345"


def basic(login: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


def fresh_get(gw: RunningGateway, path: str = "/echo", source: str = "127.0.0.1", **kwargs: Any) -> httpx.Response:
    """One request on a new connection, so the kernel picks a worker for each."""
    transport = httpx.HTTPTransport(local_address=source, verify=ssl.create_default_context(cafile=gw.ca_file))
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(gw.url("b1", path=path), **kwargs)


def workers_of(gw: RunningGateway) -> list[dict[str, Any]]:
    info = json.loads((gw.state_dir / "run" / f"{gw.process.pid}.json").read_text(encoding="utf-8"))
    assert info["role"] == "supervisor"
    return info["workers"]


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def two_workers(tmp_path: Path, standin: Standin, **base_overrides: Any) -> dict[str, Any]:
    base = base_entry(standin, "b1", "Склад", **base_overrides)
    return gateway_config(tmp_path, standin, bases=[base], workers=2,
                          admin={"enabled": True, "host": "127.0.0.1", "listen": free_port()})


def test_two_workers_share_logins_throttle_and_password_changes_and_one_admin_sums_them(
        standin: Standin, tmp_path: Path, gateway_factory: Factory) -> None:
    gw = gateway_factory(two_workers(tmp_path, standin, user_auth=True), directory=tmp_path / "gw")
    admin = f"http://127.0.0.1:{gw.config['admin']['listen']}"
    workers = workers_of(gw)
    assert sorted(w["slot"] for w in workers) == [1, 2] and len({w["pid"] for w in workers}) == 2
    cli_ok(gw.directory, "group", "add", "Операторы", "--role", "mobile", "--doc-type", "Поступление")
    cli_ok(gw.directory, "user", "add", "Иванов", "--group", "Операторы", "--password-stdin",
           input=PASSWORD + "\n", secrets=(PASSWORD,))

    # Logged in (and cached) in both workers: 12 requests on new connections, all answered.
    for _ in range(12):
        assert fresh_get(gw, headers=basic("Иванов", PASSWORD)).status_code == 200
    metrics = httpx.get(f"{admin}/metrics").text
    assert metric(metrics, "gateway_requests_total", status="200") == 12  # summed over the workers
    per_worker = [metric(metrics, "gateway_worker_requests_total", worker=str(n)) for n in (1, 2)]
    assert sum(per_worker) == 12 and min(per_worker) > 0, per_worker  # the kernel used both
    assert metric(metrics, "gateway_workers") == 2
    assert 'worker="1"' in metrics and 'worker="2"' in metrics

    # A password change ends the cached login in every worker at once.
    cli_ok(gw.directory, "user", "passwd", "Иванов", "--password-stdin", input=NEW_PASSWORD + "\n",
           secrets=(NEW_PASSWORD,))
    for _ in range(6):
        assert fresh_get(gw, headers=basic("Иванов", PASSWORD)).status_code == 401
    assert fresh_get(gw, headers=basic("Иванов", NEW_PASSWORD)).status_code == 200

    # 10 failures a minute per address means 10 across the workers, not 10 in each.
    codes = [fresh_get(gw, source="127.0.0.2", headers=basic("Иванов", WRONG)).status_code for _ in range(13)]
    assert codes == [401] * 10 + [429] * 3, codes
    assert fresh_get(gw, source="127.0.0.3", headers=basic("Иванов", NEW_PASSWORD)).status_code == 200

    assert httpx.get(f"{admin}/healthz").text.startswith("ok: 2 worker(s)")
    # The console is served by the supervisor's admin listener: it asks who you are first.
    console = httpx.get(f"{admin}/console")
    assert console.status_code in (401, 302, 303), console.status_code
    assert httpx.get(f"{admin}/readyz").status_code == 200
    for secret in (PASSWORD, NEW_PASSWORD, WRONG):
        assert secret not in gw.log()


def test_a_reload_reaches_every_worker_and_a_bad_one_is_refused_by_all(
        standin: Standin, tmp_path: Path, gateway_factory: Factory) -> None:
    gw = gateway_factory(two_workers(tmp_path, standin), directory=tmp_path / "gw")
    config = json.loads(json.dumps(gw.config))
    config["bases"].append(base_entry(standin, "b2", "Второй склад"))
    gw.mark_log()
    gw.write_config(config)
    deadline = time.monotonic() + 15
    while gw.log()[gw._log_offset:].count("configuration reloaded") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gw.log()[gw._log_offset:].count("configuration reloaded") == 2
    for _ in range(6):
        assert fresh_get(gw).status_code == 200
        transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=gw.ca_file))
        with httpx.Client(transport=transport, timeout=10) as client:
            assert client.get(gw.url("b2", path="/echo")).status_code == 200

    gw.mark_log()
    gw.config_path.write_text("bases: [\n", encoding="utf-8")
    deadline = time.monotonic() + 15
    while gw.log()[gw._log_offset:].count("configuration reload refused") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gw.log()[gw._log_offset:].count("configuration reload refused") == 2
    for _ in range(6):
        assert fresh_get(gw).status_code == 200

    gw.mark_log()
    gw.write_config(config)
    os.kill(gw.process.pid, signal.SIGHUP)
    gw.wait_for_log("SIGHUP: passing the reload on to 2 worker")
    deadline = time.monotonic() + 15
    while gw.log()[gw._log_offset:].count("configuration reloaded (SIGHUP)") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gw.log()[gw._log_offset:].count("configuration reloaded (SIGHUP)") == 2

    # A list edit reaches every worker: the address is refused whichever worker takes it.
    blacklist = gw.directory / "bases" / "b1" / "Server" / "blacklist.dat"
    blacklist.parent.mkdir(parents=True, exist_ok=True)
    blacklist.write_text("127.0.0.6\n", encoding="utf-8")
    deadline = time.monotonic() + 10
    while gw.log().count("refused 127.0.0.6") == 0 and time.monotonic() < deadline:
        try:
            fresh_get(gw, source="127.0.0.6")
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    time.sleep(2.5)  # both workers poll the files every second
    for _ in range(8):
        with pytest.raises(httpx.HTTPError):
            fresh_get(gw, source="127.0.0.6")
    assert fresh_get(gw, source="127.0.0.7").status_code == 200

    # TLS sessions resume whichever worker a returning client reaches: one ticket key for all.
    session = tmp_path / "session.pem"

    def s_client(*args: str) -> str:
        # -ign_eof: wait for the answer (and the TLS 1.3 tickets that come before it).
        return subprocess.run(["openssl", "s_client", "-ign_eof", "-connect", f"127.0.0.1:{gw.port('b1')}",
                               "-CAfile", gw.ca_file, *args],
                              input=b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                              capture_output=True, timeout=20).stdout.decode("utf-8", "replace")

    first = s_client("-sess_out", str(session))
    assert "New, TLSv1.3" in first and session.exists()
    resumed = sum("Reused, TLSv1.3" in s_client("-sess_in", str(session)) for _ in range(10))
    assert resumed >= 9, resumed


def test_a_worker_killed_under_load_is_replaced_and_the_other_keeps_serving(
        standin: Standin, tmp_path: Path, gateway_factory: Factory) -> None:
    gw = gateway_factory(two_workers(tmp_path, standin), directory=tmp_path / "gw")
    victim = next(w for w in workers_of(gw) if w["slot"] == 1)
    results: list[tuple[float, int]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                code = fresh_get(gw, path="/api/v1/DocTypes").status_code
            except httpx.HTTPError:
                code = 0
            results.append((time.monotonic(), code))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        killed_at = time.monotonic()
        os.kill(victim["pid"], signal.SIGKILL)
        gw.wait_for_log(rf"worker 1 \(pid {victim['pid']}\) exited with signal SIGKILL", timeout=10)
        gw.wait_for_log(r"worker 1 \(pid \d+\) ready again", timeout=30)
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    after_kill = [(at, code) for at, code in results if at > killed_at]
    # Only what the dead worker held (requests in flight, connections in its accept queue) may
    # fail, and only right at the kill; everything later is served by the other worker.
    late_failures = [(round(at - killed_at, 2), code) for at, code in after_kill if code != 200 and at > killed_at + 2]
    assert len(after_kill) >= 10 and not late_failures, (len(after_kill), late_failures)
    new_workers = workers_of(gw)
    assert len(new_workers) == 2 and victim["pid"] not in {w["pid"] for w in new_workers}
    admin = f"http://127.0.0.1:{gw.config['admin']['listen']}"
    assert httpx.get(f"{admin}/healthz").status_code == 200
    assert re.search(r"gateway_worker_restarts_total 1\.0", httpx.get(f"{admin}/metrics").text)
    assert gw.stop() == 0
    assert not [w for w in new_workers if _alive(w["pid"])]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_reload_and_status_speak_for_every_worker(standin: Standin, tmp_path: Path, gateway_factory: Factory) -> None:
    gw = gateway_factory(two_workers(tmp_path, standin), directory=tmp_path / "gw")
    pids = sorted(w["pid"] for w in workers_of(gw))
    reloaded = run_gateway_command(gw.directory, "reload")
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    # Each worker answers for itself; the supervisor is not waited for.
    assert reloaded.stdout.count("new configuration applied") == 2
    assert all(f"pid {pid}:" in reloaded.stdout for pid in pids)
    status = run_gateway_command(gw.directory, "status")
    assert status.returncode == 0, status.stderr
    assert "(supervisor), 2 workers" in status.stdout
    assert all(f"worker pid {pid}: up" in status.stdout for pid in pids)
    assert status.stdout.count("last reload: OK") == 2


def test_workers_share_the_log_file_and_only_the_supervisor_rotates_it(
        standin: Standin, tmp_path: Path, gateway_factory: Factory) -> None:
    config = two_workers(tmp_path, standin)
    config["log"] = {"file": "logs/gateway.log", "format": "json", "max_bytes": "16k", "backups": 8}
    gw = gateway_factory(config, directory=tmp_path / "gw", wait=False)
    log = gw.directory / "logs" / "gateway.log"
    deadline = time.monotonic() + 60
    while not (log.exists() and "gateway ready" in log.read_text(encoding="utf-8", errors="replace")):
        assert gw.process.poll() is None and time.monotonic() < deadline, gw.log_path.read_text(errors="replace")
        time.sleep(0.2)
    requests = 300
    for i in range(requests):
        assert fresh_get(gw, path=f"/echo/rotation-{i}").status_code == 200
        # At most ~50 lines a second: the supervisor looks once a second, so a file can outgrow
        # max_bytes only by what a second brings, even on a busy machine.
        time.sleep(0.02)
    time.sleep(2.5)  # a rotation pass, and the access lines of the last requests
    files = sorted(log.parent.glob("gateway.log*"))
    assert len(files) > 2, files  # 300 access lines are far more than 16 KiB: rotated, more than once
    # Oldest first: gateway.log.8 … gateway.log.1, then gateway.log.
    files.sort(key=lambda path: -int(path.suffix[1:]) if path.suffix[1:].isdigit() else 0)
    seen: list[int] = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)  # every line whole, though two processes wrote it
            found = re.search(r"/echo/rotation-(\d+)", entry.get("path", "") or entry.get("message", ""))
            if found and entry.get("logger") == "gateway.access":
                seen.append(int(found.group(1)))
    # Nothing lost or doubled by a rotation racing another process's write…
    assert sorted(seen) == list(range(requests))
    # …and the files hold the requests in the order they came: with a rotation in every process,
    # one worker went on writing into the file another had just rotated away.
    out_of_order = [(a, b) for a, b in zip(seen, seen[1:]) if b < a - 3]
    assert not out_of_order, out_of_order[:5]
    # Rotated files stay near the size asked: one writer decides, the others follow.
    assert all(path.stat().st_size < 64 * 1024 for path in files)
