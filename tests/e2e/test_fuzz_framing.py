"""Issue 19: a property-based differential test of request framing.

Hypothesis writes request heads and bodies with the framing variants a lax parser reads
differently (Content-Length and Transfer-Encoding combinations and spellings, whitespace and case
around names and values, obs-fold, bare CR and LF, NUL, chunk extensions, chunk-size overflow,
requests smuggled in bodies, pipelining) and HTTP/2 requests with and without content-length.
They go through one real gateway (TLS) to a raw back end that records the bytes it receives and
parses them strictly with h11. Invariants, per example:

- every request the back end receives parses strictly (h11) as exactly one request;
- the back end never receives more requests than the client got answers from the back end
  (each back-end answer names the request target it answered): no desync, no smuggling;
- a request the gateway refused (an answer not from the back end) never reaches the back end.

`make test` runs FUZZ_EXAMPLES (default 100) HTTP/1 and a third as many HTTP/2 examples. The long
run (docs/RELIABILITY.md):  FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q tests/e2e/test_fuzz_framing.py
"""

from __future__ import annotations

import itertools
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h11
import h2.config
import h2.connection
import h2.events
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.harness import RunningGateway, base_entry, free_port, gateway_config, start_gateway

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
# A long run writes its running figures here every 250 examples (it may be stopped before its end).
STATS_FILE = os.environ.get("FUZZ_STATS_FILE")
READ_IDLE = 0.3  # a request the gateway still waits on (a body promised, never sent) ends here
LATE_ANSWER = 15.0  # how long an answer owed for a request the back end has taken may be late
MARK = "X-Fuzz-Backend"
_case_numbers = itertools.count(1)
# Outcomes over the run, printed at the end (the figures in docs/RELIABILITY.md come from here):
# a fuzz whose examples were all refused, or all passed, would show nothing.
STATS = {"examples": 0, "requests sent": 0, "reached the back end": 0, "refused by the gateway": 0,
         "unanswered (gateway waits for more)": 0, "violations": 0}


# --- the raw back end ------------------------------------------------------------------------------

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


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, RecordingBackend]]:
    backend = RecordingBackend()
    tmp = tmp_path_factory.mktemp("fuzz")
    base = {"id": "b1", "name": "Fuzz", "folder": "bases/b1", "https": True, "user_auth": False,
            "data": {"listen": free_port(), "backend": f"http://127.0.0.1:{backend.port}"},
            "print": {"enabled": False}}
    gw = start_gateway(tmp / "gw", gateway_config(tmp, bases=[base], proxy={"backend_timeout": 5},
                                                  tls={"http2": True}), wait=False)
    try:
        gw.wait_for_log(r"gateway ready", 90)  # one start for every example: worth a patient wait
    except AssertionError:
        gw.stop()
        raise
    started = time.monotonic()
    yield gw, backend
    gw.stop()
    backend.close()
    print(f"\nfuzz figures ({time.monotonic() - started:.0f} s): "
          + ", ".join(f"{k}: {v}" for k, v in STATS.items()))
    if STATS["examples"] >= 40:
        assert STATS["reached the back end"] > 0 and STATS["refused by the gateway"] > 0, STATS


# --- what the client sends -------------------------------------------------------------------------

# The plain spelling is repeated in each list: most examples must be nearly valid, or the gateway
# refuses them all at the first byte and the back end sees nothing to compare.
CL_VALUES = ["{n}"] * 8 + [" {n}", "{n} ", "+{n}", "0{n}", "{n},{n}", "{n}, {m}", "-1", "0x{n}", "{n}\x00",
             "99999999999999999999999", "{m}", ""]
CL_NAMES = ["Content-Length"] * 8 + ["content-length", "CONTENT-LENGTH", "Content-Length ", " Content-Length",
            "Content_Length", "Content-Length\t", "\tContent-Length"]
TE_VALUES = ["chunked"] * 10 + ["Chunked", "CHUNKED", " chunked", "chunked ", "chunked, identity", "identity, chunked",
             "gzip, chunked", "chunked, chunked", "xchunked", "chunked\x0b", "chunked\x00", "identity", "\tchunked",
             "chunked;q=1", '"chunked"']
TE_NAMES = ["Transfer-Encoding"] * 8 + ["transfer-encoding", "Transfer-Encoding ", " Transfer-Encoding",
            "Transfer_Encoding", "Transfer-Encoding\t", "Transfer-\x00Encoding"]
EOLS = ["\r\n"] * 24 + ["\n", "\r", "\r\r\n"]
CHUNK_SIZES = ["{x}"] * 8 + ["{X}", "0{x}", " {x}", "{x} ", "{x};ext=1", "{x};a=\"b c\"", "{x}\t", "0x{x}", "+{x}",
               "ffffffffffffffffffff{x}", "1" + "0" * 17, "{x}\x00"]


MUTATIONS = ["cl_name", "cl_value", "te_name", "te_value", "second_cl", "second_te", "both", "eol", "fold",
             "odd_header", "chunk_size", "chunk_ext", "truncate", "version", "method", "drop_framing"]


@st.composite
def framed_request(draw: st.DrawFn, target: str, smuggled: str) -> bytes:
    """A valid request (Content-Length or chunked framing), then up to three mutations of its framing."""
    body_payload = draw(st.sampled_from([
        "hello", "", f"0\r\n\r\nGET {smuggled} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET {smuggled} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "x" * 40]))
    n = len(body_payload.encode("latin-1"))
    m = max(0, n + draw(st.integers(-3, 30)))
    mutations = set(draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)))
    chunked = draw(st.booleans())
    method, version = "POST", "HTTP/1.1"
    if "method" in mutations:
        method = draw(st.sampled_from(["GET", "PUT", "post", "P\x00ST", "GET  "]))
    if "version" in mutations:
        version = draw(st.sampled_from(["HTTP/1.0", "HTTP/1.1 ", "HTTP/2.0", "http/1.1", "HTTP/1.10", "HTTP/01.1"]))
    headers: list[list[str]] = [["Host", "127.0.0.1"]]
    if chunked:
        headers.append(["Transfer-Encoding", "chunked"])
    else:
        headers.append(["Content-Length", str(n)])
    if "cl_name" in mutations or "cl_value" in mutations or "both" in mutations:
        if not any(h[0] == "Content-Length" for h in headers):
            headers.append(["Content-Length", str(n)])
        cl = next(h for h in headers if h[0] == "Content-Length")
        if "cl_name" in mutations:
            cl[0] = draw(st.sampled_from(CL_NAMES[8:]))
        if "cl_value" in mutations:
            cl[1] = draw(st.sampled_from(CL_VALUES[8:])).format(n=n, m=m)
    if "te_name" in mutations or "te_value" in mutations or "both" in mutations:
        if not any(h[0] == "Transfer-Encoding" for h in headers):
            headers.append(["Transfer-Encoding", "chunked"])
        te = next(h for h in headers if h[0] == "Transfer-Encoding")
        if "te_name" in mutations:
            te[0] = draw(st.sampled_from(TE_NAMES[8:]))
        if "te_value" in mutations:
            te[1] = draw(st.sampled_from(TE_VALUES[10:]))
    if "second_cl" in mutations:
        headers.append(["Content-Length", str(m)])
    if "second_te" in mutations:
        headers.append(["Transfer-Encoding", draw(st.sampled_from(TE_VALUES[10:] + ["chunked"]))])
    if "drop_framing" in mutations:
        headers = [h for h in headers if h[0] not in ("Content-Length", "Transfer-Encoding")]
    draw(st.randoms()).shuffle(headers) if draw(st.booleans()) else None
    lines = [f"{name}: {value}" for name, value in headers]
    if "fold" in mutations:  # obs-fold: a continuation line
        lines.insert(draw(st.integers(1, len(lines))), draw(st.sampled_from([" chunked", "\tchunked", " 5", " x"])))
    if "odd_header" in mutations:
        lines.append(draw(st.sampled_from(["X-A: a\x00b", "X-A: a\rb", "X-A: a\nb", "X-A : b", "X A: b", ": empty",
                                           "X-A:\x7f", "Connection: close", "Expect: 100-continue",
                                           "Connection: keep-alive, Transfer-Encoding", "Host: other"])))
    eols = ["\r\n"] * (len(lines) + 2)
    if "eol" in mutations:
        eols[draw(st.integers(0, len(eols) - 1))] = draw(st.sampled_from(["\n", "\r", "\r\r\n", "\n\r"]))
    head = f"{method} {target} {version}{eols[0]}" + "".join(l + e for l, e in zip(lines, eols[1:])) + eols[-1]
    framed_chunked = any(name.lower().strip() == "transfer-encoding" for name, _ in headers) and chunked
    if framed_chunked:
        size = f"{n:x}"
        if "chunk_size" in mutations:
            size = draw(st.sampled_from(CHUNK_SIZES[8:])).format(x=f"{n:x}", X=f"{n:X}")
        if "chunk_ext" in mutations:
            size += draw(st.sampled_from([";ext=1", ';a="b c"', ";" + "e" * 5000, "\t;x"]))
        trailer = draw(st.sampled_from(["", "", "X-Trailer: 1\r\n", "Content-Length: 5\r\n"]))
        body = (f"{size}\r\n{body_payload}\r\n" if n else "") + f"0\r\n{trailer}\r\n"
    else:
        body = body_payload
    if "truncate" in mutations:
        body = body[: draw(st.integers(0, len(body)))]
    return head.encode("latin-1") + body.encode("latin-1")


def read_answers(sock: ssl.SSLSocket, backend: RecordingBackend) -> list[tuple[int, str | None]]:
    """(status, back-end target or None) of every answer until the connection closes or goes quiet.
    Quiet is not the end while the back end has taken more requests than were answered, or an
    answer is half read: on a loaded machine an answer may be late, and only a lost one is a desync."""
    sock.settimeout(READ_IDLE)
    data = b""
    started = time.monotonic()
    while True:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            answers, complete = parse_answers(data)
            waiting = backend.count() > sum(1 for _, target in answers if target is not None) or not complete
            if waiting and time.monotonic() - started < LATE_ANSWER:
                continue
            break
        except (ssl.SSLError, OSError):
            break
        if not chunk:
            break
        data += chunk
    answers, complete = parse_answers(data)
    assert complete, f"incomplete answer from the gateway: {data[-300:]!r}"
    return answers


def parse_answers(data: bytes) -> tuple[list[tuple[int, str | None]], bool]:
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
        answers.append((status, fields.get(MARK.lower())))
    return answers, True


def open_tls(gw: RunningGateway, alpn: list[str]) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=gw.ca_file)
    ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", gw.port("b1")), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def strict_targets(raw: bytes) -> list[str]:
    """The request targets a strict parser (h11) reads in the client's bytes, up to its first refusal:
    a body-less POST followed by a request line is two requests, not a smuggled one."""
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(raw)
    targets = []
    try:
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                if event is h11.PAUSED and parser.their_state is h11.DONE:
                    parser.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                    parser.send(h11.EndOfMessage())
                    parser.start_next_cycle()
                    continue
                return targets
            if isinstance(event, h11.Request):
                targets.append(event.target.decode("latin-1"))
    except (h11.RemoteProtocolError, h11.LocalProtocolError):
        return targets


def check_invariants(backend: RecordingBackend, answers: list[tuple[int, str | None]], sent: list[str],
                     what: bytes | str) -> None:
    time.sleep(0.05)  # the back end records before it answers; this covers a request still in flight
    received = backend.take()
    STATS["examples"] += 1
    STATS["requests sent"] += len(sent)
    STATS["reached the back end"] += len(received.targets)
    STATS["refused by the gateway"] += sum(1 for _, target in answers if target is None)
    STATS["unanswered (gateway waits for more)"] += max(0, len(sent) - len(answers))
    STATS["violations"] += bool(received.violations)
    if STATS_FILE and STATS["examples"] % 250 == 0:
        with open(STATS_FILE, "a", encoding="utf-8") as out:
            out.write(time.strftime("%H:%M:%S ") + ", ".join(f"{k}: {v}" for k, v in STATS.items()) + "\n")
    assert not received.violations, (received.violations, what)
    answered = [target for _, target in answers if target is not None]
    assert len(received.targets) <= len(answered), ("desync", received.targets, answers, what)
    assert sorted(received.targets) == sorted(answered), (received.targets, answers, what)
    # Only requests the client sent reach it: nothing smuggled in a body, unless a strict parser
    # too reads those bytes as a request of their own.
    strict = strict_targets(what) if isinstance(what, bytes) else []
    assert set(received.targets) <= set(sent) | set(strict), ("smuggled", received.targets, sent, strict, what)


# --- the properties ----------------------------------------------------------------------------------

def pipelined() -> st.SearchStrategy[tuple[list[str], bytes]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[list[str], bytes]:
        case = next(_case_numbers)
        count = draw(st.integers(1, 3))
        targets = [f"/fz/{case}/{i}" for i in range(count)]
        parts = [draw(framed_request(t, f"/smuggled/{case}/{i}")) for i, t in enumerate(targets)]
        return targets, b"".join(parts)
    return build()


FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 1000,
                         suppress_health_check=list(HealthCheck), database=None)


@FUZZ_SETTINGS
@given(request=pipelined())
def test_http1_framing_never_desyncs_the_backend(fuzz_gateway: tuple[RunningGateway, RecordingBackend],
                                                 request: tuple[list[str], bytes]) -> None:
    gw, backend = fuzz_gateway
    targets, raw = request
    backend.take()
    with open_tls(gw, ["http/1.1"]) as sock:
        try:
            sock.sendall(raw)
        except OSError:
            pass  # refused and closed before everything was sent
        answers = read_answers(sock, backend)
    check_invariants(backend, answers, targets, raw)


@settings(FUZZ_SETTINGS, max_examples=max(20, EXAMPLES // 3))
@given(declared=st.sampled_from([None, "same", "less", "more", "bad", "two"]),
       body=st.binary(max_size=64), chunks=st.integers(1, 3), end_with_headers=st.booleans(),
       method=st.sampled_from(["POST", "GET", "PUT"]))
def test_http2_requests_to_an_http1_backend_are_framed_exactly(
        fuzz_gateway: tuple[RunningGateway, RecordingBackend], declared: str | None, body: bytes, chunks: int,
        end_with_headers: bool, method: str) -> None:
    gw, backend = fuzz_gateway
    backend.take()
    target = f"/fz2/{next(_case_numbers)}"
    headers = [(":method", method), (":path", target), (":scheme", "https"), (":authority", "127.0.0.1")]
    length = {"same": str(len(body)), "less": str(max(len(body) - 1, 0)), "more": str(len(body) + 5),
              "bad": "abc", "two": f"{len(body)},{len(body)}"}.get(declared or "")
    if length is not None:
        headers.append(("content-length", length))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                                                normalize_outbound_headers=False))
    conn.initiate_connection()
    statuses: list[tuple[int, str | None]] = []
    with open_tls(gw, ["h2"]) as sock:
        assert sock.selected_alpn_protocol() == "h2"
        sid = conn.get_next_available_stream_id()
        no_body = end_with_headers and not body
        conn.send_headers(sid, headers, end_stream=no_body)
        if not no_body:
            step = max(1, len(body) // chunks)
            pieces = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
            for i, piece in enumerate(pieces):
                conn.send_data(sid, piece, end_stream=i == len(pieces) - 1)
        sock.sendall(conn.data_to_send())
        sock.settimeout(3)
        done = False
        got: dict[str, str] = {}
        started = time.monotonic()
        while not done:
            try:
                data = sock.recv(65536)
            except (socket.timeout, TimeoutError):
                if backend.count() and time.monotonic() - started < LATE_ANSWER:
                    continue  # the back end has it: the answer is late, not lost
                break
            except OSError:
                break
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    got = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                           for k, v in event.headers}
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    done = True
            sock.sendall(conn.data_to_send())
        if got:
            statuses.append((int(got[":status"]), got.get(MARK.lower())))
    check_invariants(backend, statuses, [target], repr((headers, body)))
    if length is not None and length != str(len(body)):
        assert not statuses or statuses[0][1] is None, ("a wrong content-length reached the back end", statuses)
