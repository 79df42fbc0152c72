"""One access-log entry per request, through the ``gateway.access`` logger.

With ``log.format: json`` each entry is one JSON object a line (time, base, client, user, role,
method, path, status, bytes_in, bytes_out, duration_ms, verdict); with ``text`` a line for people.
The path has secret-looking query values masked (the legacy API takes passwords in the URL);
headers and bodies are never logged.

Byte counts: a buffered body is measured; a streamed one is counted as it passes, through a
stream callable wrapped around whatever an earlier addon installed (compression, backups). A
body of unknown length (chunked) is streamed from the start so it can be counted — mitmproxy
would otherwise switch it to streaming half-way and the count would be lost. Every decision
about a request is taken in ``requestheaders`` and no addon reads response bodies, so nothing
depends on those bodies being buffered.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from addons import errorpages
from mitmproxy import http

from addons.routing import client_ip
from addons._context import listener_of
from gateway.traffic.redact import redact_url

logger = logging.getLogger("gateway.access")

Stream = Callable[[bytes], Any]
COUNTER_KEY = "gateway_bytes"  # flow.metadata: {"in": ByteCounter | None, "out": ByteCounter | None}
LOGGED_KEY = "gateway_access_logged"
ENTRY_KEY = "gateway_access_entry"  # flow.metadata: the logged fields, reused by Metrics


class ByteCounter:
    """A stream callable that passes chunks on (through ``inner`` if given) and counts what leaves."""

    def __init__(self, inner: Stream | None = None) -> None:
        self.inner = inner
        self.total = 0

    def __call__(self, chunk: bytes) -> list[bytes]:
        out = self.inner(chunk) if self.inner is not None else chunk
        # A list, never a bare b"": mitmproxy would send an empty chunk, which in HTTP/1.1
        # chunked encoding is the end-of-body marker.
        pieces = [out] if isinstance(out, (bytes, bytearray)) else list(out)
        pieces = [bytes(p) for p in pieces if p]
        self.total += sum(len(p) for p in pieces)
        return pieces


def wrap_stream(message: http.Message) -> ByteCounter:
    current = message.stream
    counter = ByteCounter(current if callable(current) else None)
    message.stream = counter
    return counter


def has_unknown_length(response: http.Response) -> bool:
    return "content-length" not in response.headers and response.status_code not in (204, 304) \
        and not 100 <= response.status_code < 200


def body_size(message: http.Message | None, counter: ByteCounter | None) -> int | None:
    if message is None:
        return 0
    if counter is not None:
        return counter.total
    if not message.stream:
        return len(message.raw_content or b"")
    length = message.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def outcome(flow: http.HTTPFlow) -> tuple[int | None, str]:
    """(status the client got, verdict)."""
    verdict = flow.metadata.get("gateway_verdict")
    if flow.response is not None:
        status: int | None = flow.response.status_code
    elif flow.error is not None:
        # mitmproxy answered the error itself (ErrorPages wrote the text), or the client left.
        status, fallback = errorpages.failure(flow)
        verdict = fallback if fallback != "backend-error" else (verdict or fallback)
    else:
        status = None
    if verdict is None:
        verdict = "backend-error" if status in (502, 504) and not flow.metadata.get("gateway_denied") else "allowed"
    return status, str(verdict)


def entry(flow: http.HTTPFlow, now: float | None = None) -> dict[str, Any]:
    """The facts of one finished request, secrets masked."""
    now = time.time() if now is None else now
    status, verdict = outcome(flow)
    counters = flow.metadata.get(COUNTER_KEY) or {}
    started = flow.request.timestamp_start or now
    fields: dict[str, Any] = {
        "base": flow.metadata.get("gateway_base") or _base_name(flow),
        "client": client_ip(flow),
        "user": flow.metadata.get("gateway_user"),
        "role": flow.metadata.get("gateway_role"),
        "method": flow.request.method,
        "path": masked_path(flow.request.path),
        "status": status,
        "bytes_in": body_size(flow.request, counters.get("in")),
        "bytes_out": body_size(flow.response, counters.get("out")) if flow.response is not None else 0,
        "duration_ms": round(max(0.0, now - started) * 1000, 1),
        "verdict": verdict,
    }
    device = flow.metadata.get("gateway_device")
    if device:
        fields["device"] = device
    reason = flow.metadata.get("gateway_reason")
    if reason:
        fields["reason"] = str(reason)
    if flow.error is not None:
        fields["error"] = flow.error.msg
    return fields


def _base_name(flow: http.HTTPFlow) -> str | None:
    listener = listener_of(flow.client_conn)
    return listener.base.name if listener else None


def masked_path(path: str) -> str:
    return redact_url(path)


def text_line(fields: dict[str, Any]) -> str:
    size = "-" if fields["bytes_out"] is None else str(fields["bytes_out"])
    who = fields["user"] or "-"
    line = (f"{fields['client']} {who} [{fields['base'] or '?'}] {fields['method']} {fields['path']} "
            f"{fields['status'] if fields['status'] is not None else '-'} {size}B {fields['duration_ms']:.0f}ms "
            f"{fields['verdict']}")
    return line + (f" ({fields['reason']})" if "reason" in fields else "")


class AccessLog:
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        request = flow.request
        # A body of unknown length (chunked upload) is counted as it streams, like responses.
        if request.stream or "content-length" not in request.headers:
            flow.metadata.setdefault(COUNTER_KEY, {})["in"] = wrap_stream(request)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or flow.request.method == "HEAD":
            return
        if response.stream or has_unknown_length(response):
            flow.metadata.setdefault(COUNTER_KEY, {})["out"] = wrap_stream(response)

    def response(self, flow: http.HTTPFlow) -> None:
        self._log(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._log(flow)

    @staticmethod
    def _log(flow: http.HTTPFlow) -> None:
        if flow.metadata.get(LOGGED_KEY):
            return
        flow.metadata[LOGGED_KEY] = True
        fields = flow.metadata[ENTRY_KEY] = entry(flow)
        if logger.isEnabledFor(logging.INFO):
            # As logger.info("%s", line, extra=fields), without logging's search of the call
            # stack for the caller's file and line (no format of ours shows them): one record a
            # request.
            # The fields are set on the record afterwards rather than through makeRecord's extra=,
            # which checks each of them against the record's own attributes: their names are
            # fixed (entry()) and none is one of a LogRecord's.
            record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, "%s", (text_line(fields),), None, "_log")
            record.__dict__.update(fields)
            logger.handle(record)

