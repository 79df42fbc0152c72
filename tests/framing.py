"""A raw back end that parses every byte strictly, and a raw TLS client that reads pipelined
answers: shared by the request-framing fuzz (tests/e2e/test_fuzz_framing.py) and the tests of
what it found (tests/e2e/test_request_framing_found.py)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h11

from tests.harness import RunningGateway, free_port, gateway_config, start_gateway

MARK = "X-Fuzz-Backend"  # on every back-end answer: the target it answered
# Silence that ends a reading when nothing is owed: only a refusal of a request the strict parser
# still waits on (an incomplete one) can come, and it comes at once.
QUIET = 0.05
# Silence that ends it when the gateway may read the client's bytes otherwise than a strict
# parser does (then the count owed is a guess, and a late answer must not be taken for none).
QUIET_UNSURE = 0.3
LATE_ANSWER = 10.0  # how long an answer owed may be late (after the last byte) on a loaded machine
# How each reading ended, over a run ("waited out": an answer owed never came within LATE_ANSWER).
READ_ENDS: Counter[str] = Counter()


@dataclass
class Received:
    targets: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


class RecordingBackend:
    """Parses every connection strictly with h11 and answers each request with its own target."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.received = Received()
        threading.Thread(target=self._serve, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.received.targets)

    def take(self) -> Received:
        with self.lock:
            taken, self.received = self.received, Received()
        return taken

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        parser = h11.Connection(h11.SERVER)
        raw = b""
        target: str | None = None
        conn.settimeout(30)
        try:
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    data = conn.recv(65536)
                    raw += data
                    parser.receive_data(data)
                    if not data:
                        return  # closed between requests or inside one the gateway gave up on
                    continue
                if isinstance(event, h11.Request):
                    target = event.target.decode("latin-1")
                elif isinstance(event, h11.EndOfMessage):
                    assert target is not None
                    with self.lock:
                        self.received.targets.append(target)
                    body = target.encode("latin-1")
                    conn.sendall(parser.send(h11.Response(status_code=200, headers=[
                        ("Content-Length", str(len(body))), (MARK, target)])) + parser.send(h11.Data(data=body))
                        + parser.send(h11.EndOfMessage()))
                    if parser.our_state is h11.MUST_CLOSE:
                        return
                    parser.start_next_cycle()
                    target = None
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except h11.RemoteProtocolError as e:
            with self.lock:
                self.received.violations.append(f"h11: {e} in {raw[-600:]!r}")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


def start_framing_gateway(directory: Path, backend: RecordingBackend) -> RunningGateway:
    """One gateway (HTTPS, HTTP/2 on, no user_auth) in front of ``backend`` as base ``b1``."""
    base = {"id": "b1", "name": "Fuzz", "folder": "bases/b1", "https": True, "user_auth": False,
            "data": {"listen": free_port(), "backend": f"http://127.0.0.1:{backend.port}"},
            "print": {"enabled": False}}
    gw = start_gateway(directory / "gw", gateway_config(directory, bases=[base], proxy={"backend_timeout": 5},
                                                        tls={"http2": True}), wait=False)
    try:
        gw.wait_for_log(r"gateway ready", 90)  # shared by many requests: worth a patient wait
    except AssertionError:
        gw.stop()
        raise
    return gw


def open_tls(gw: RunningGateway, alpn: list[str]) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=gw.ca_file)
    ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", gw.port("b1")), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


@dataclass
class StrictReading:
    """What a strict parser (h11) reads in a client's bytes, up to its first refusal."""
    targets: list[str]  # every request line it read (a body-less POST then a request line: two)
    complete: int  # requests read to their end: each is owed an answer
    sure: bool  # it read everything without a refusal (else the gateway may read further)


def strict_reading(raw: bytes) -> StrictReading:
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(raw)
    targets: list[str] = []
    complete = 0
    try:
        while True:
            event = parser.next_event()
            if event is h11.PAUSED and parser.their_state is h11.DONE:
                parser.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                parser.send(h11.EndOfMessage())
                parser.start_next_cycle()
                continue
            if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                return StrictReading(targets, complete, True)
            if isinstance(event, h11.Request):
                targets.append(event.target.decode("latin-1"))
            elif isinstance(event, h11.EndOfMessage):
                complete += 1
    except (h11.RemoteProtocolError, h11.LocalProtocolError):
        return StrictReading(targets, complete, False)


def parse_answers(data: bytes) -> tuple[list[tuple[int, str | None]], bool]:
    """(status, back-end target or None) of each final answer in ``data`` (interim 1xx answers are
    read past), and whether the last is whole."""
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return answers, False
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "chunked" in fields.get("transfer-encoding", ""):
            if rest.startswith(b"0\r\n\r\n"):
                data = rest[5:]
            else:
                body_end = rest.find(b"\r\n0\r\n\r\n")
                if body_end < 0:
                    return answers, False
                data = rest[body_end + 7:]
        else:
            length = int(fields.get("content-length", "0"))
            if len(rest) < length:
                return answers, False
            data = rest[length:]
        if not 100 <= status < 200:  # an interim answer (100 Continue) answers no request
            answers.append((status, fields.get(MARK.lower())))
    return answers, True


def read_answers(sock: ssl.SSLSocket | socket.socket, backend: RecordingBackend, owed: int, sure: bool = True,
                 late: float = LATE_ANSWER) -> list[tuple[int, str | None]]:
    """(status, back-end target or None) of every answer until the connection closes, or goes
    quiet with nothing owed.

    Owed: ``owed`` answers (the requests a strict parser reads whole in what was sent), one for
    every request the back end has taken, and the rest of a half-read answer. A gateway that
    holds pipelined requests (mitmproxy reads the next one only once the previous answer has
    gone) may be silent for a while between two answers it owes, longer on a loaded machine:
    silence then is waited out, up to ``late`` seconds after the last byte. Silence with nothing
    owed ends the reading after QUIET (QUIET_UNSURE when ``sure`` is false: the gateway may read
    requests the strict parser refused, and be about to answer them); with ``sure`` (the strict
    parser read every byte without a refusal), the reading ends as soon as every answer owed is in."""
    sock.settimeout(QUIET if sure else QUIET_UNSURE)
    data = b""
    last = time.monotonic()
    while True:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            answers, complete = parse_answers(data)
            from_backend = sum(1 for _, target in answers if target is not None)
            owing = not complete or len(answers) < owed or backend.count() > from_backend
            if owing and time.monotonic() - last < late:
                continue
            READ_ENDS["waited out" if owing else "quiet"] += 1
            break
        except (ssl.SSLError, OSError):
            READ_ENDS["closed"] += 1
            break
        if not chunk:
            READ_ENDS["closed"] += 1
            break
        data += chunk
        last = time.monotonic()
        if sure and owed:
            answers, complete = parse_answers(data)
            if complete and len(answers) >= owed and backend.count() <= sum(1 for _, t in answers if t is not None):
                # Every answer owed is in: what a strict parser reads in the rest waits for more
                # bytes, and a gateway that read further would show at the back end (the next
                # example's check finds a late arrival).
                READ_ENDS["all owed in"] += 1
                break
    answers, complete = parse_answers(data)
    assert complete, f"incomplete answer from the gateway: {data[-300:]!r}"
    return answers
