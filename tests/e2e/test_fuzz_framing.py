"""Issue 19: a property-based differential test of request framing.

Hypothesis writes request heads and bodies with the framing variants a lax parser reads
differently (Content-Length and Transfer-Encoding combinations and spellings, whitespace and case
around names and values, obs-fold, bare CR and LF, NUL, chunk extensions, chunk-size overflow,
requests smuggled in bodies, pipelining) and HTTP/2 requests with and without content-length.
They go through one real gateway (TLS) to a raw back end that records the bytes it receives and
parses them strictly with h11 (tests/framing.py). Invariants, per example:

- every request the back end receives parses strictly (h11) as exactly one request;
- the back end never receives more requests than the client got answers from the back end
  (each back-end answer names the request target it answered): no desync, no smuggling;
- a request the gateway refused (an answer not from the back end) never reaches the back end;
- HTTP/1: every request the back end receives is one a strict parser reads in the client's
  bytes (the gateway is never laxer than h11 about what it forwards).

`make test` runs FUZZ_EXAMPLES (default 100) HTTP/1 and a third as many HTTP/2 examples, against
one gateway and back end for the whole module. The long run (docs/RELIABILITY.md):

    FUZZ_EXAMPLES=20000 FUZZ_KEEP_GOING=1 FUZZ_STATS_FILE=fuzz.txt nice -n 10 \
        .venv/bin/python -m pytest -q -s -p no:timeout tests/e2e/test_fuzz_framing.py

FUZZ_KEEP_GOING=1 records each invariant violation and goes on (Hypothesis would otherwise stop at
the first and shrink it); they are printed at the end, and the run still fails if there were any.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections import Counter
from typing import Iterator

import h11
import h2.config
import h2.connection
import h2.events
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.framing import (LATE_ANSWER, MARK, QUIET_UNSURE, READ_ENDS, RecordingBackend, open_tls, parse_answers,
                           read_answers, start_framing_gateway, strict_reading)
from tests.harness import RunningGateway

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
# A long run writes its running figures here every 250 examples (it may be stopped before its end).
STATS_FILE = os.environ.get("FUZZ_STATS_FILE")
KEEP_GOING = os.environ.get("FUZZ_KEEP_GOING", "") not in ("", "0")
# Each example's targets carry a case number, so a late arrival is told from the current example's
# requests. Fixed width: a target's length changes the lengths Hypothesis draws against (a body cut
# at 0..len), and a draw whose bounds change on replay is a "flaky strategy" to it.
_case_numbers = (f"{n:08d}" for n in itertools.count(1))
# Outcomes over the run, printed at the end (the figures in docs/RELIABILITY.md come from here):
# a fuzz whose examples were all refused, or all passed, would show nothing.
STATS: Counter[str] = Counter()
VIOLATIONS: Counter[str] = Counter()  # by invariant
KEPT: list[str] = []  # FUZZ_KEEP_GOING: each violation, for the end of the run
_STAT_ORDER = ("examples", "HTTP/1 examples", "HTTP/2 examples", "requests sent", "reached the back end",
               "refused by the gateway", "unanswered (gateway waits for more)", "HTTP/2 refused by a stream reset")


def _figures() -> str:
    return (", ".join(f"{k}: {STATS[k]}" for k in _STAT_ORDER)
            + f"; violations: {sum(VIOLATIONS.values())} {dict(VIOLATIONS)}; reads ended: {dict(READ_ENDS)}")


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, RecordingBackend]]:
    backend = RecordingBackend()
    gw = start_framing_gateway(tmp_path_factory.mktemp("fuzz"), backend)
    started = time.monotonic()
    yield gw, backend
    gw.stop()
    backend.close()
    print(f"\nfuzz figures ({time.monotonic() - started:.0f} s): {_figures()}")
    for line in KEPT:
        print("VIOLATION", line)
    assert not KEPT, f"{len(KEPT)} invariant violation(s), printed above"
    if STATS["examples"] >= 40:
        assert STATS["reached the back end"] > 0 and STATS["refused by the gateway"] > 0, _figures()


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
                                           "Connection: keep-alive, Transfer-Encoding", "Connection: Content-Length",
                                           "Connection: close, Host", "Host: other"])))
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


class Violation(AssertionError):
    def __init__(self, invariant: str, detail: object) -> None:
        self.invariant = invariant
        super().__init__(f"{invariant}: {detail!r}")


def _check(ok: bool, invariant: str, detail: object) -> None:
    if not ok:
        raise Violation(invariant, detail)


_previous: list[bytes | str] = []  # the last example checked, to name a late arrival after it


def start_example(backend: RecordingBackend) -> None:
    """Nothing may reach the back end between two examples: a request arriving after its example
    was checked was forwarded after every answer owed had come (a gateway reading further than a
    strict parser), and its answer went nowhere."""
    stray = backend.take()
    if stray.targets or stray.violations:
        _record(Violation("late arrival", (stray.targets, stray.violations, _previous[-1:])))


def _record(violation: Violation) -> None:
    VIOLATIONS[violation.invariant] += 1
    if not KEEP_GOING:
        raise violation
    KEPT.append(str(violation)[:3000])


def check_invariants(backend: RecordingBackend, answers: list[tuple[int, str | None]], sent: list[str],
                     what: bytes | str, kind: str) -> None:
    time.sleep(0.005)  # the back end records before it answers; a later arrival is caught by start_example
    received = backend.take()
    _previous[:] = [what]
    STATS["examples"] += 1
    STATS[f"{kind} examples"] += 1
    STATS["requests sent"] += len(sent)
    STATS["reached the back end"] += len(received.targets)
    STATS["refused by the gateway"] += sum(1 for _, target in answers if target is None)
    if kind == "HTTP/1":
        STATS["unanswered (gateway waits for more)"] += max(0, len(sent) - len(answers))
    else:
        STATS["HTTP/2 refused by a stream reset"] += max(0, len(sent) - len(answers))
    if STATS_FILE and STATS["examples"] % 250 == 0:
        with open(STATS_FILE, "a", encoding="utf-8") as out:
            out.write(time.strftime("%H:%M:%S ") + f"load {os.getloadavg()[0]:.1f}; " + _figures() + "\n")
    try:
        _check(not received.violations, "h11 at the back end", (received.violations, what))
        answered = [target for _, target in answers if target is not None]
        _check(len(received.targets) <= len(answered), "desync", (received.targets, answers, what))
        _check(sorted(received.targets) == sorted(answered), "refused or lost", (received.targets, answers, what))
        if isinstance(what, bytes):
            # Only requests the client sent reach it: nothing smuggled in a body, unless a strict
            # parser too reads those bytes as a request of their own; and nothing a strict parser
            # refuses (a bare CR, a coding it cannot decode) goes through as if it were valid.
            strict = strict_reading(what).targets
            _check(set(received.targets) <= set(sent) | set(strict), "smuggled", (received.targets, sent, strict, what))
            _check(set(received.targets) <= set(strict), "laxer than h11", (received.targets, strict, what))
    except Violation as violation:
        _record(violation)


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
    start_example(backend)
    strict = strict_reading(raw)
    with open_tls(gw, ["http/1.1"]) as sock:
        try:
            sock.sendall(raw)
        except OSError:
            pass  # refused and closed before everything was sent
        answers = read_answers(sock, backend, owed=strict.complete, sure=strict.sure)
    check_invariants(backend, answers, targets, raw, "HTTP/1")


# Fields HTTP/2 forbids or the HTTP/1 back end would read as framing (RFC 9113 §8.2.2).
H2_EXTRA = [None] * 6 + [("transfer-encoding", "chunked"), ("connection", "keep-alive"), ("te", "gzip"),
                         ("te", "trailers"), ("upgrade", "h2c"), ("connection", "transfer-encoding"),
                         ("keep-alive", "5"), ("host", "other")]


@settings(FUZZ_SETTINGS, max_examples=max(20, EXAMPLES // 3))
@given(declared=st.sampled_from([None, "same", "less", "more", "bad", "two"]),
       body=st.binary(max_size=64), chunks=st.integers(1, 3), end_with_headers=st.booleans(),
       method=st.sampled_from(["POST", "GET", "PUT"]), extra=st.sampled_from(H2_EXTRA))
def test_http2_requests_to_an_http1_backend_are_framed_exactly(
        fuzz_gateway: tuple[RunningGateway, RecordingBackend], declared: str | None, body: bytes, chunks: int,
        end_with_headers: bool, method: str, extra: tuple[str, str] | None) -> None:
    gw, backend = fuzz_gateway
    start_example(backend)
    target = f"/fz2/{next(_case_numbers)}"
    headers = [(":method", method), (":path", target), (":scheme", "https"), (":authority", "127.0.0.1")]
    length = {"same": str(len(body)), "less": str(max(len(body) - 1, 0)), "more": str(len(body) + 5),
              "bad": "abc", "two": f"{len(body)},{len(body)}"}.get(declared or "")
    if length is not None:
        headers.append(("content-length", length))
    if extra is not None:
        headers.append(extra)
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
        # The stream always ends (an answer, a reset, or GOAWAY): the timeout only bounds a hang.
        sock.settimeout(LATE_ANSWER)
        done = False
        got: dict[str, str] = {}
        while not done:
            try:
                data = sock.recv(65536)
            except (socket.timeout, TimeoutError, OSError):
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
    check_invariants(backend, statuses, [target], repr((headers, body)), "HTTP/2")
    wrong = (length is not None and length != str(len(body))) or (extra is not None and extra != ("te", "trailers"))
    if wrong and statuses and statuses[0][1] is not None:
        _record(Violation("wrong content-length or connection-specific field forwarded", (headers, body)))


# --- the client waits for what the gateway owes -------------------------------------------------

class HeldGateway:
    """A stand-in for a gateway under load: it answers pipelined requests one at a time, as
    mitmproxy does (the next request is read only once the previous answer has gone), and holds
    each one after the first for ``hold`` seconds before forwarding it to the back end."""

    def __init__(self, backend: RecordingBackend, hold: float) -> None:
        self.backend = backend
        self.hold = hold
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        parser = h11.Connection(h11.SERVER)
        answered = 0
        target, body = "", b""
        with conn, socket.create_connection(("127.0.0.1", self.backend.port)) as upstream:
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    data = conn.recv(65536)
                    if not data:
                        return
                    parser.receive_data(data)
                elif isinstance(event, h11.Request):
                    target, body = event.target.decode(), b""
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    if answered:
                        time.sleep(self.hold)
                    upstream.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
                                     .encode() + body)
                    answer = b""
                    while not (parse_answers(answer)[0] and parse_answers(answer)[1]):
                        answer += upstream.recv(65536)
                    conn.sendall(answer)
                    answered += 1
                    parser.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                    parser.send(h11.EndOfMessage())
                    parser.start_next_cycle()
                else:
                    return

    def close(self) -> None:
        self.sock.close()


def test_pipelined_answers_a_held_gateway_owes_are_waited_for() -> None:
    """The "lost answer" of the first fuzz runs (docs/RELIABILITY.md): three valid pipelined
    requests, the back end had taken two, the client had read one answer. The client had stopped
    reading after 0.3 s of silence while the gateway, holding the next request until the previous
    answer was out, still owed two answers; the back end then took the second request and its
    answer went to a closed socket. The reader must wait for answers owed, and not forever."""
    backend = RecordingBackend()
    raw = b"".join(f"POST /held/{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".encode() for i in range(3))
    assert strict_reading(raw).complete == 3
    held = HeldGateway(backend, hold=QUIET_UNSURE + 0.3)  # longer than any silence that ends a reading
    try:
        with socket.create_connection(("127.0.0.1", held.port), timeout=5) as sock:
            sock.sendall(raw)
            answers = read_answers(sock, backend, owed=3)
        assert [target for _, target in answers] == ["/held/0", "/held/1", "/held/2"]
        assert backend.take().targets == ["/held/0", "/held/1", "/held/2"]
    finally:
        held.close()
    # Bounded: a gateway that never sends what it owes is given up on `late` after its last byte.
    stuck = HeldGateway(backend, hold=60)
    try:
        with socket.create_connection(("127.0.0.1", stuck.port), timeout=5) as sock:
            sock.sendall(raw)
            started = time.monotonic()
            answers = read_answers(sock, backend, owed=3, late=0.5)
        assert [target for _, target in answers] == ["/held/0"] and time.monotonic() - started < 2.5
    finally:
        stuck.close()
        backend.close()
