"""Hostile clients against what workers and machines share (issue 24, points 4, 5 and 8).

The set-up of the outside test round: gateway A with `workers: 2` and gateway B on the same real
Redis (its own state folder, A's key file). What one attacker spreads over both machines and all
their workers must add up: HTTP/2 stream resets (point 5), a password-only spray (point 8), guesses
at `admin` on B's base port that must not lock A's console (point 4). Two gateway starts for the
whole module.
"""

from __future__ import annotations

import base64
import re
import shutil
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Iterator

import h2.config
import h2.connection
import httpx
import pytest

from gateway.store import keys
from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config, start_gateway
from tests.redis_server import start_redis

TERMINAL_PASSWORD = "Term9-Sklad-2024"
ADMIN_PASSWORD = "Adm1n-Sklad-2024"
WRONG = "not-the-password"
SPRAY_BUDGET = 40


@pytest.fixture(scope="module")
def machines(standin: Standin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, ...]]:
    root = tmp_path_factory.mktemp("shared")
    redis = start_redis(root / "redis")
    started: list[RunningGateway] = []
    try:
        for name, workers in (("a", 2), ("b", 1)):
            directory = root / name
            if started:  # the second machine gets the first one's key file, as docs/REDIS.md says
                (directory / "state").mkdir(parents=True)
                shutil.copyfile(started[0].state_dir / keys.SECRET_FILE, directory / "state" / keys.SECRET_FILE)
            config = gateway_config(directory, bases=[base_entry(standin, "tls"),
                                                      base_entry(standin, "auth", user_auth=True)],
                                    workers=workers, store={"backend": "redis", "redis_url": redis.url},
                                    throttle={"spray_failures": SPRAY_BUDGET},
                                    admin={"enabled": True, "host": "127.0.0.1", "listen": free_port()})
            started.append(start_gateway(directory, config, wait=False))
            started[-1].wait_for_log("gateway ready", 60)
        a = started[0]
        cli_ok(a.directory, "group", "add", "Обмен", "--role", "external", "--doc-type", "Поступление")
        cli_ok(a.directory, "user", "add", "term9", "--group", "Обмен", "--password-stdin",
               input=TERMINAL_PASSWORD + "\n")
        cli_ok(a.directory, "group", "add", "Админы", "--role", "admin", "--doc-type", "Поступление")
        cli_ok(a.directory, "user", "add", "admin", "--group", "Админы", "--password-stdin",
               input=ADMIN_PASSWORD + "\n")
        yield tuple(started)
    finally:
        for gw in started:
            gw.stop()
        redis.stop()


def _client(gw: RunningGateway, source: str, base: str = "auth") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source, verify=ssl.create_default_context(cafile=gw.ca_file))
    return httpx.Client(transport=transport, base_url=gw.url(base), timeout=30)


def _basic(login: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


# --- point 5: resets spread over machines and workers add up --------------------------------


def _reset_connection(gw: RunningGateway, source: str, pairs: int) -> bool:
    """One HTTP/2 connection sending ``pairs`` HEADERS + RST_STREAM; False if it was refused."""
    context = ssl.create_default_context(cafile=gw.ca_file)
    context.set_alpn_protocols(["h2"])
    try:
        raw = socket.create_connection(("127.0.0.1", gw.port("tls")), timeout=5, source_address=(source, 0))
        tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    except (OSError, ssl.SSLError):
        return False
    with tls:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        for _ in range(pairs):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":path", "/slow?seconds=30"), (":scheme", "https"),
                                    (":authority", "x")])
            conn.reset_stream(sid)
        try:
            tls.sendall(conn.data_to_send())
            tls.settimeout(0.3)  # the gateway reads what was sent before it sees the close
            while tls.recv(65536):
                pass
        except (OSError, ssl.SSLError):
            pass
    return True


def _refused_everywhere(gateways: tuple[RunningGateway, ...], source: str, timeout: float = 5.0) -> bool:
    """Every gateway refuses the address, four connections in a row each (two workers or one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_reset_connection(gw, source, 1) for gw in gateways for _ in range(4)):
            return True
        time.sleep(0.3)
    return False


def test_resets_spread_over_two_machines_and_their_workers_ban_the_address_on_all(
        machines: tuple[RunningGateway, ...]) -> None:
    a, b = machines
    source = "127.0.2.40"
    for gw in machines:
        gw.mark_log()
    # 99 resets a connection (under the per-connection limit), 396 on A's two workers and 198
    # on B: no process alone sees more than the address limit of 5 × 100, together they do.
    for gw, connections in ((a, 4), (b, 2)):
        for _ in range(connections):
            assert _reset_connection(gw, source, 99), "refused before the address limit was reached"
    assert _refused_everywhere(machines, source), "a machine or worker still serves the address"
    assert _reset_connection(a, "127.0.2.41", 1) and _reset_connection(b, "127.0.2.41", 1)  # others are not
    logged = a.log()[a._log_offset:] + b.log()[b._log_offset:]
    assert len(re.findall(r"reset-ban|stream resets in 10 s over its connections", logged)) >= 1
    # The ban is in the store: listed on either machine, and lifted on one it ends on both.
    listed = cli_ok(b.directory, "bans", "list")
    assert re.search(r"address \(HTTP/2 resets\)\s+127\.0\.2\.40\s+-\s+\d+s", listed), listed
    cli_ok(a.directory, "bans", "lift", source)
    deadline = time.monotonic() + 5
    while not (_reset_connection(a, source, 1) and _reset_connection(b, source, 1)):
        assert time.monotonic() < deadline, "the lifted ban still holds"
        time.sleep(0.3)


# --- point 8: a spray spread over machines is seen whole while it is checked ----------------


def test_a_password_only_spray_over_two_machines_is_detected_once_and_a_cached_terminal_goes_on(
        machines: tuple[RunningGateway, ...]) -> None:
    a, b = machines
    for gw in machines:
        gw.mark_log()
    named = _basic("term9", TERMINAL_PASSWORD)
    terminal = _client(b, "127.0.2.60")
    assert terminal.get("/echo", headers=named).status_code == 200  # now cached on B
    latencies: list[float] = []
    done = threading.Event()

    def work() -> None:
        while not done.is_set():
            started = time.monotonic()
            assert terminal.get("/echo", headers=named).status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.1)

    answers: list[int] = []

    def guess(n: int) -> None:
        gw = machines[n % 2]
        with _client(gw, f"127.0.3.{1 + n % 30}") as attacker:
            answers.append(attacker.get("/echo", headers=_basic("", f"guess-{n}")).status_code)

    worker = threading.Thread(target=work)
    worker.start()
    # Three budgets' worth of guesses from 30 addresses, half on A's two workers, half on B.
    burst = [threading.Thread(target=guess, args=(n,)) for n in range(3 * SPRAY_BUDGET)]
    for t in burst:
        t.start()
    for t in burst:
        t.join()
    done.set()
    worker.join()
    terminal.close()
    assert answers.count(401) == len(burst), answers
    pattern = r"spray-detected: \d+ failed password-only logins on base auth"
    deadline = time.monotonic() + 5
    while not any(re.search(pattern, gw.log()[gw._log_offset:]) for gw in machines):
        assert time.monotonic() < deadline, "no spray-detected on either machine"
        time.sleep(0.1)
    events = sum(len(re.findall(pattern, gw.log()[gw._log_offset:])) for gw in machines)
    assert events == 1, f"{events} spray events: one per window for all machines"
    ordered = sorted(latencies)
    print(f"spray over two machines: cached terminal {len(ordered)} requests, slowest {ordered[-1]:.2f} s")
    assert len(ordered) >= 3 and ordered[len(ordered) // 2] < 0.5 and ordered[-1] < 5.0, ordered


# --- point 4: guesses on one machine's base port never lock the other's console -------------


def test_guesses_at_admin_on_b_do_not_lock_the_console_of_a(machines: tuple[RunningGateway, ...]) -> None:
    a, b = machines
    statuses = []
    for source in ("127.0.2.11", "127.0.2.12"):  # 10 guesses each: the address limit, the account's 20
        with _client(b, source) as attacker:
            statuses += [attacker.get("/echo", headers=_basic("admin", WRONG)).status_code for _ in range(10)]
    assert statuses == [401] * 20, statuses
    with _client(a, "127.0.2.15") as elsewhere:  # the account is locked on the bases, of both machines
        assert elsewhere.get("/echo", headers=_basic("admin", ADMIN_PASSWORD)).status_code == 429
    console = f"http://127.0.0.1:{a.config['admin']['listen']}"
    with httpx.Client(base_url=console, timeout=20) as http:
        answer = http.post("/console/login", data={"username": "admin", "password": ADMIN_PASSWORD},
                           headers={"Origin": console})
        assert answer.status_code == 303, answer.text[:300]
    cli_ok(a.directory, "bans", "lift", "admin")
