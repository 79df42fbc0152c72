"""Issue 19, fault 6: back-end faults each get a defined outcome, the client never hangs, memory
stays bounded and the gateway's open files return to their baseline.

A raw-socket fake back end misbehaves by path: black hole, reset in the middle of an answer,
malformed status line, an answer head above the limits, an endless slow body (with a length the
gateway buffers: 504 after proxy.backend_timeout; chunked, streamed: the client sees it move, and
when the client leaves the gateway closes the back-end connection); a second base points at a
port nobody listens on (connection refused).
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import psutil
import pytest

from tests.harness import RunningGateway, Standin, base_entry, free_port, gateway_config

BACKEND_TIMEOUT = 2


class FaultyBackend:
    """Answers each request the way its path asks; counts the connections it still holds open."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.open = 0
        self.lock = threading.Lock()
        self.closing = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
        try:
            conn.settimeout(30)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            path = head.split(b" ", 2)[1].decode()
            self._answer(conn, path)
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.open -= 1

    @staticmethod
    def _answer(conn: socket.socket, path: str) -> None:
        if path == "/blackhole":
            conn.recv(1)  # returns when the gateway gives up and closes
        elif path == "/reset":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
            time.sleep(0.2)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
        elif path == "/resetstreamed":  # above limits.response_buffer: streamed, the answer has begun
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
            time.sleep(0.2)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif path == "/malformed":
            conn.sendall(b"HTTP/1.1 2OO banana\r\nContent-Length: 2\r\n\r\nok")
            conn.recv(1)
        elif path == "/bighead":
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            line = b"X-Filler: " + b"a" * 8000 + b"\r\n"
            for _ in range(2000):  # 16 MB of head, if nobody stops reading
                conn.sendall(line)
        elif path == "/slowfixed":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while True:
                conn.sendall(b"x")
                time.sleep(0.2)
        elif path == "/slowbody":
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            while True:
                conn.sendall(b"1\r\nx\r\n")
                time.sleep(0.2)
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self.closing = True
        self.sock.close()



def open_sockets(process: psutil.Process) -> int:
    """Sockets only: a fault must not leave connections behind, while files the gateway opens on
    its own schedule (the dashboard's per-minute database, its WAL) are not the fault's doing."""
    fd_dir = Path(f"/proc/{process.pid}/fd")
    count = 0
    for fd in fd_dir.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            pass  # closed while we looked
    return count


@pytest.fixture

def faulty() -> FaultyBackend:
    backend = FaultyBackend()
    yield backend
    backend.close()


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_each_backend_fault_gets_a_defined_answer_no_hang_and_files_back_to_baseline(
        standin: Standin, faulty: FaultyBackend, tmp_path: Path,
        gateway_factory: Callable[..., RunningGateway]) -> None:
    b1 = base_entry(standin, "b1", data={"listen": free_port(), "backend": faulty.url})
    b2 = base_entry(standin, "b2", data={"listen": free_port(), "backend": f"http://127.0.0.1:{free_port()}"})
    gw = gateway_factory(gateway_config(tmp_path, standin, bases=[b1, b2],
                                        proxy={"backend_timeout": BACKEND_TIMEOUT, "connect_timeout": 2}), wait=False)
    gw.wait_for_log(r"gateway ready", 60)
    process = psutil.Process(gw.process.pid)
    verify = ssl.create_default_context(cafile=gw.ca_file)

    def get(base: str, path: str) -> tuple[int | str, float]:
        started = time.monotonic()
        try:
            with httpx.Client(verify=verify, timeout=20) as client:
                outcome: int | str = client.get(gw.url(base, path=path)).status_code
        except httpx.HTTPError as e:
            outcome = type(e).__name__
        return outcome, time.monotonic() - started

    assert get("b1", "/fine")[0] == 200
    baseline_fds = open_sockets(process)
    baseline_rss = process.memory_info().rss

    expected = {
        ("b2", "/refused"): (502, 5),
        ("b1", "/blackhole"): (504, BACKEND_TIMEOUT + 3),
        ("b1", "/reset"): (502, 5),
        # The answer had begun: the client's connection is closed and it sees the body torn, not complete.
        ("b1", "/resetstreamed"): ({"RemoteProtocolError", "ReadError"}, 5),
        ("b1", "/malformed"): (502, 5),
        ("b1", "/bighead"): (502, 5),
        ("b1", "/slowfixed"): (504, BACKEND_TIMEOUT + 3),
    }
    seen = {}
    for (base, path), (status, limit) in expected.items():
        for _ in range(3):
            outcome, took = get(base, path)
            seen[path] = (outcome, round(took, 1))
            assert (outcome in status if isinstance(status, set) else outcome == status) and took <= limit, seen
    print("\n" + ", ".join(f"{path}: {outcome} in {took} s" for path, (outcome, took) in seen.items()))
    log = gw.log()
    assert "did not answer GET /blackhole" in log and "did not finish the answer to GET /slowfixed" in log

    # Endless, chunked: streamed as it comes; the client leaves when it likes.
    for _ in range(3):
        with httpx.Client(verify=verify, timeout=5) as client:
            with client.stream("GET", gw.url("b1", path="/slowbody")) as answer:
                assert answer.status_code == 200
                got, started = b"", time.monotonic()
                for piece in answer.iter_raw():
                    got += piece
                    if time.monotonic() - started > 1.5:
                        break
                assert len(got) >= 3, got

    assert get("b1", "/fine")[0] == 200
    # Every back-end connection closed by the gateway, its own files back to what they were.
    assert wait_until(lambda: faulty.open == 0, 10), faulty.open
    # One descriptor of slack (seen once under heavy load); a leak would show one per failed answer, 21 here.
    assert wait_until(lambda: open_sockets(process) <= baseline_fds + 1, 10), (baseline_fds, open_sockets(process))
    grown = process.memory_info().rss - baseline_rss
    assert grown < 64 * 1024 * 1024, grown  # 16 MB of answer head was never held whole
    print(f"open sockets {baseline_fds} before, {open_sockets(process)} after; RSS grew {grown / 2**20:.1f} MiB")
