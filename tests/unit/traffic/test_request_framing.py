"""Request framing the fuzz of issue 19 found read two ways: the core checks behind the gateway's answers.

Each case here came out of tests/e2e/test_fuzz_framing.py (the e2e side of each is in
tests/e2e/test_request_framing_found.py): a head a lax parser and a strict one split
differently, a Transfer-Encoding the gateway forwarded for the back end to decode its own way,
and a Connection header naming the very fields that frame the request.
"""

from __future__ import annotations

import pytest

from gateway.traffic.limits import (HeadRefused, LimitSettings, check_request_head, check_transfer_encoding,
                                    connection_options, connection_specific_in_http2, head_lines,
                                    without_connection_fields)


# --- bare CR (RFC 9112 §2.2) ---------------------------------------------------------------

@pytest.mark.parametrize("head", [
    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\r\n\r\n",  # before the last line's CRLF
    b"POST /a HTTP/1.1\r\r\nHost: x\r\n\r\n",                        # before the request line's CRLF
    b"POST /a HTTP/1.1\r\nHost: x\rTransfer-Encoding: chunked\r\n\r\n",
    b"\rPOST /a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\n\r\r\n",
])
def test_a_bare_cr_anywhere_in_a_head_is_refused(head: bytes) -> None:
    with pytest.raises(HeadRefused) as refused:
        head_lines(head)
    assert refused.value.status == 400 and "bare CR" in refused.value.reason


def test_head_lines_split_crlf_and_bare_lf_alike() -> None:
    expected = [b"GET /a HTTP/1.1", b"Host: x", b"X-A: b"]
    assert head_lines(b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\r\n") == expected
    assert head_lines(b"GET /a HTTP/1.1\nHost: x\r\nX-A: b\n\n") == expected
    assert head_lines(b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\n\r\n") == expected
    assert head_lines(bytearray(b"GET / HTTP/1.0\r\n\r\n")) == [b"GET / HTTP/1.0"]


# --- Transfer-Encoding: exactly one chunked (RFC 9112 §6.1) ---------------------------------

@pytest.mark.parametrize("values", [
    [b"gzip, chunked"], [b"chunked, chunked"], [b"identity"], [b"chunked, identity"], [b"xchunked"],
    [b'"chunked"'], [b"chunked;q=1"], [b""], [b"chunked", b"chunked"], [b"chunked", b"gzip"],
])
def test_any_transfer_encoding_but_one_chunked_is_not_implemented(values: list[bytes]) -> None:
    with pytest.raises(HeadRefused) as refused:
        check_transfer_encoding(values, b"HTTP/1.1")
    assert refused.value.status == 501


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b"CHUNKED", b" chunked", b"chunked\t"])
def test_one_chunked_in_any_case_is_read(value: bytes) -> None:
    check_transfer_encoding([value], b"HTTP/1.1")
    check_transfer_encoding([], b"HTTP/1.0")


def test_transfer_encoding_in_http10_is_faulty_framing() -> None:
    with pytest.raises(HeadRefused) as refused:
        check_transfer_encoding([b"chunked"], b"HTTP/1.0")
    assert refused.value.status == 400


# --- Connection naming framing fields or Host (RFC 9110 §7.6.1) ------------------------------

@pytest.mark.parametrize("value", [b"keep-alive, Transfer-Encoding", b"Content-Length", b"close,host",
                                   b" transfer-encoding\t"])
def test_connection_naming_framing_fields_or_host_is_refused(value: bytes) -> None:
    with pytest.raises(HeadRefused) as refused:
        connection_options([b"close", value])
    assert refused.value.status == 400 and "Connection" in refused.value.reason
    with pytest.raises(HeadRefused):
        without_connection_fields(((b"Host", b"x"), (b"Connection", value), (b"Transfer-Encoding", b"chunked")))


def test_connection_drops_the_fields_it_names_and_keeps_its_directives() -> None:
    fields = ((b"Host", b"x"), (b"Connection", b"close, X-Secret, TE"), (b"X-Secret", b"1"), (b"TE", b"trailers"),
              (b"Content-Length", b"3"), (b"connection", b"Keep-Alive"))
    assert without_connection_fields(fields) == ((b"Host", b"x"), (b"Content-Length", b"3"),
                                                 (b"Connection", b"close, keep-alive"))
    plain = ((b"Host", b"x"),)
    assert without_connection_fields(plain) is plain
    assert connection_options([b"close, , X-A"]) == {b"close", b"x-a"}


# --- the whole HTTP/1 head, and HTTP/2 fields ------------------------------------------------

@pytest.mark.parametrize("lines, status", [
    ([b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: gzip, chunked"], 501),
    ([b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"], 501),
    ([b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: identity", b"Content-Length: 3"], 501),
    ([b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked", b"Content-Length: 3"], 400),
    ([b"POST / HTTP/1.0", b"Transfer-Encoding: chunked"], 400),
    ([b"POST / HTTP/1.1", b"Host: a", b"Connection: keep-alive, Transfer-Encoding",
      b"Transfer-Encoding: chunked"], 400),
    ([b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 3", b"Connection: Content-Length"], 400),
    ([b"GET / HTTP/1.1", b"Host: a", b"Connection: host"], 400),
])
def test_framing_heads_refused(lines: list[bytes], status: int) -> None:
    with pytest.raises(HeadRefused) as refused:
        check_request_head(lines, LimitSettings())
    assert refused.value.status == status


def test_framing_heads_accepted() -> None:
    assert check_request_head([b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: Chunked",
                               b"Connection: keep-alive, TE", b"TE: trailers"], LimitSettings()) is None
    assert check_request_head([b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 3", b"Connection: close"],
                              LimitSettings()) == 3


def test_http2_connection_specific_fields() -> None:
    assert connection_specific_in_http2(((b"content-length", b"3"), (b"te", b"trailers"))) is None
    assert connection_specific_in_http2(((b"transfer-encoding", b"chunked"),)) == b"transfer-encoding"
    assert connection_specific_in_http2(((b"x-a", b"1"), (b"Connection", b"close"))) == b"connection"
    assert connection_specific_in_http2(((b"te", b"gzip"),)) == b"te"
