"""What the request-framing fuzz (issue 19, tests/e2e/test_fuzz_framing.py) found, one test each,
through a real gateway over raw TLS to a back end that parses every byte strictly (tests/framing.py).

- A ``Connection`` header naming ``Transfer-Encoding``, ``Content-Length`` or ``Host``: the gateway
  dropped those fields as hop-by-hop and forwarded a body without its framing, which the back end
  read as a request of its own. Now 400, never forwarded.
- ``Transfer-Encoding`` other than one ``chunked`` (``gzip, chunked`` was forwarded as sent, for the
  back end to decode its own way): now 501, never forwarded.
- A bare CR just before a line's CRLF (``Host: x\\r\\r\\n``) was taken as half of that CRLF and the
  head forwarded, where a strict parser refuses it: now 400, never forwarded.
"""

from __future__ import annotations

import socket
import time
from typing import Iterator

import h2.config
import h2.connection
import h2.events
import pytest

from tests.framing import RecordingBackend, open_tls, read_answers, start_framing_gateway, strict_reading
from tests.harness import RunningGateway

BODY = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"  # a request hidden in a body


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, RecordingBackend]]:
    backend = RecordingBackend()
    gw = start_framing_gateway(tmp_path_factory.mktemp("framing"), backend)
    yield gw, backend
    gw.stop()
    backend.close()


def exchange(gateway: tuple[RunningGateway, RecordingBackend], raw: bytes) -> tuple[list[int], list[str]]:
    """Send ``raw`` over one TLS connection: the statuses of the answers, and the targets the back
    end received."""
    gw, backend = gateway
    backend.take()
    strict = strict_reading(raw)
    with open_tls(gw, ["http/1.1"]) as sock:
        sock.sendall(raw)
        answers = read_answers(sock, backend, owed=strict.complete, sure=strict.sure)
    time.sleep(0.05)
    received = backend.take()
    assert not received.violations, received.violations
    return [status for status, _ in answers], received.targets


def post(framing: list[bytes], body: bytes, target: bytes = b"/framed", line_end: bytes = b"\r\n") -> bytes:
    head = b"POST " + target + b" HTTP/1.1" + line_end + b"Host: 127.0.0.1" + line_end
    return head + b"".join(f + line_end for f in framing) + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize("named", [b"Transfer-Encoding", b"keep-alive, transfer-encoding", b"Content-Length",
                                   b"close, Host"])
def test_connection_naming_framing_fields_or_host_is_refused(gateway: tuple[RunningGateway, RecordingBackend],
                                                             named: bytes) -> None:
    if b"content-length" in named.lower():
        raw = post([b"Content-Length: %d" % len(BODY), b"Connection: " + named], BODY)
    else:
        raw = post([b"Transfer-Encoding: chunked", b"Connection: " + named], chunked(BODY))
    statuses, received = exchange(gateway, raw)
    assert statuses == [400] and received == [], (statuses, received)


def test_connection_still_drops_the_fields_it_may_name(gateway: tuple[RunningGateway, RecordingBackend]) -> None:
    """The control: a Connection naming an ordinary field is honoured, and the request goes on."""
    raw = post([b"Transfer-Encoding: chunked", b"Connection: keep-alive, X-Hop", b"X-Hop: 1"], chunked(b"hello"))
    assert exchange(gateway, raw) == ([200], ["/framed"])


@pytest.mark.parametrize("coding", [[b"gzip, chunked"], [b"chunked, chunked"], [b"identity"], [b"chunked, identity"],
                                    [b"xchunked"], [b'"chunked"'], [b"chunked", b"chunked"]], ids=repr)
def test_transfer_encoding_other_than_one_chunked_is_not_implemented(
        gateway: tuple[RunningGateway, RecordingBackend], coding: list[bytes]) -> None:
    raw = post([b"Transfer-Encoding: " + c for c in coding], chunked(BODY))
    statuses, received = exchange(gateway, raw)
    assert statuses == [501] and received == [], (statuses, received)


@pytest.mark.parametrize("coding", [b"chunked", b"Chunked", b"\tCHUNKED"])
def test_one_chunked_in_any_case_goes_through(gateway: tuple[RunningGateway, RecordingBackend], coding: bytes) -> None:
    assert exchange(gateway, post([b"Transfer-Encoding: " + coding], chunked(b"hello"))) == ([200], ["/framed"])


@pytest.mark.parametrize("raw", [
    post([b"Content-Length: 5\r"], b"hello"),                      # before the last header line's CRLF
    post([b"Content-Length: 5", b"X-A: b\r"], b"hello"),
    post([b"Transfer-Encoding: chunked\r"], chunked(b"hello")),
    b"\r" + post([b"Content-Length: 5"], b"hello"),                # before the request line
    post([b"Content-Length: 5"], b"hello", line_end=b"\r\r\n"),
], ids=["last-header-line", "after-another-line", "after-transfer-encoding", "before-the-request-line", "every-line"])
def test_a_bare_cr_in_a_head_is_refused(gateway: tuple[RunningGateway, RecordingBackend], raw: bytes) -> None:
    statuses, received = exchange(gateway, raw)
    assert statuses == [400] and received == [], (statuses, received)


def test_pipelined_heads_with_a_bare_cr_after_a_good_one(gateway: tuple[RunningGateway, RecordingBackend]) -> None:
    """The fuzz's shape: a valid request, then one whose last header line ends in CR CR LF."""
    raw = post([b"Content-Length: 5"], b"hello", b"/first") + post([b"Content-Length: 5\r"], b"hello", b"/second")
    assert exchange(gateway, raw) == ([200, 400], ["/first"])


def h2_request(gw: RunningGateway, extra: tuple[str, str]) -> tuple[int | None, bool]:
    """(status or None, whether the stream was reset) for an HTTP/2 POST carrying ``extra``."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                                                normalize_outbound_headers=False))
    conn.initiate_connection()
    with open_tls(gw, ["h2"]) as sock:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", "/h2"), (":scheme", "https"),
                                (":authority", "127.0.0.1"), ("content-length", "5"), extra])
        conn.send_data(sid, b"hello", end_stream=True)
        sock.sendall(conn.data_to_send())
        sock.settimeout(10)
        status, reset = None, False
        while True:
            try:
                data = sock.recv(65536)
            except (socket.timeout, OSError):
                break
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    reset = True
            if reset or any(isinstance(e, h2.events.StreamEnded) for e in conn.receive_data(b"")) or status:
                break
        return status, reset


@pytest.mark.parametrize("extra", [("transfer-encoding", "chunked"), ("connection", "transfer-encoding"),
                                   ("te", "gzip"), ("keep-alive", "5")])
def test_http2_connection_specific_fields_never_reach_an_http1_back_end(
        gateway: tuple[RunningGateway, RecordingBackend], extra: tuple[str, str]) -> None:
    gw, backend = gateway
    backend.take()
    status, reset = h2_request(gw, extra)
    time.sleep(0.05)
    assert (reset or status == 400) and backend.take().targets == [], (status, reset)
    # The control: the same request without the field goes through.
    assert h2_request(gw, ("x-ok", "1")) == (200, False)
    assert backend.take().targets == ["/h2"]


def test_an_interim_100_continue_is_not_taken_for_an_answer(gateway: tuple[RunningGateway, RecordingBackend]) -> None:
    """The long run's two "desyncs": the gateway's 100 Continue was counted as the answer to a
    request with ``Expect: 100-continue``, so the client stopped reading one answer early."""
    raw = (post([b"Content-Length: 5", b"Expect: 100-continue"], b"hello", b"/expecting")
           + post([b"Content-Length: 0"], b"", b"/next"))
    assert exchange(gateway, raw) == ([200, 200], ["/expecting", "/next"])
