"""The `limits:` section and the pure request-head checks (gateway/traffic/limits.py), log folding."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.config import ConfigError, parse_config
from gateway.traffic.limits import HeadRefused, LimitSettings, check_request_head, identity_lookalike
from gateway.ops.logsetup import FoldRepeats

BASE = {"id": "b1", "name": "B", "data": {"listen": 18001, "backend": "http://127.0.0.1:9706"}}


def parse(limits: object, **base: object) -> object:
    return parse_config({"bases": [{**BASE, **base}], "limits": limits}, Path("/tmp/gateway.yaml"))


def test_defaults_and_sizes() -> None:
    cfg = parse({"client_header_max_size": "16k", "client_max_body_size": "10m"}, client_max_body_size="1k")
    assert cfg.limits.client_header_max_size == 16 * 1024
    assert cfg.limits.client_max_body_size == 10 * 1024 * 1024
    assert cfg.bases[0].client_max_body_size == 1024 and cfg.bases[0].websocket is False
    assert parse(None).limits == LimitSettings()


def test_request_bodies_have_a_limit_and_a_memory_budget_by_default() -> None:
    limits = parse(None).limits
    assert limits.client_max_body_size == 100 * 1024 * 1024
    assert (limits.request_buffer, limits.request_buffer_per_ip) == (32 * 1024 * 1024, 8 * 1024 * 1024)
    # 0 still means no limit, for the whole gateway or one base.
    cfg = parse({"client_max_body_size": 0, "request_buffer": "64m", "request_buffer_per_ip": "16m"},
                client_max_body_size=0)
    assert cfg.limits.client_max_body_size == 0 and cfg.bases[0].client_max_body_size == 0
    assert (cfg.limits.request_buffer, cfg.limits.request_buffer_per_ip) == (64 * 1024 * 1024, 16 * 1024 * 1024)


@pytest.mark.parametrize("limits, key", [
    ({"client_header_timeout": 0}, "limits.client_header_timeout"),
    ({"client_header_max_size": "lots"}, "limits.client_header_max_size"),
    ({"methods": ["get"]}, "limits.methods[0]"),
    ({"strip_headers": ["bad header"]}, "limits.strip_headers[0]"),
    ({"request_line_max_size": "64k"}, "limits.request_line_max_size"),
    ({"max_header": 5}, "limits.max_header"),
    ({"request_buffer": "1k"}, "limits.request_buffer"),
    ({"request_buffer": "4m", "request_buffer_per_ip": "8m"}, "limits.request_buffer_per_ip"),
])
def test_errors_name_the_key(limits: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(limits)
    assert error.value.key == key


@pytest.mark.parametrize("lines, status", [
    ([b"GET / HTTP/1.1", b"X-A: a\rb"], 400),
    ([b"GET / HTTP/1.1", b"X-A: a", b" folded"], 400),
    ([b"GET / HTTP/1.1", b"X-A: a\x00"], 400),
    ([b"GET / HTTP/1.1", b"X A: a"], 400),
    ([b"GET / HTTP/1.1", b"Content-Length: 1", b"Content-Length: 2"], 400),
    ([b"GET / HTTP/1.1", b"Content-Length: 9007199254740992"], 400),
    ([b"GET / HTTP/1.2"], 505),
    ([b"GET / HTTP/3"], 505),
    ([b"GET / HTTX/1.1"], 400),
    ([b"get / HTTP/1.1"], 400),
    ([b"BREW / HTTP/1.1"], 501),
    ([b"GET  / HTTP/1.1"], 400),
    ([b"GET / HTTP/1.1"] + [b"X: a"] * 101, 431),
    ([b"GET / HTTP/1.1"], 400),  # no Host (RFC 9112 §3.2)
    ([b"GET / HTTP/1.1", b"Host: a", b"host: b"], 400),
    ([b"GET / HTTP/1.0", b"Host: a", b"Host: b"], 400),
])
def test_heads_refused(lines: list[bytes], status: int) -> None:
    with pytest.raises(HeadRefused) as refused:
        check_request_head(lines, LimitSettings())
    assert refused.value.status == status


def test_heads_accepted() -> None:
    assert check_request_head([b"MERGE /x HTTP/1.1", b"Host: a", b"Content-Length: 12", b"X-T: a\tb"],
                              LimitSettings()) == 12
    assert check_request_head([b"GET / HTTP/1.0"], LimitSettings()) is None


def test_identity_lookalike() -> None:
    assert identity_lookalike("X_Gateway_Role", "X-Gateway-")
    assert identity_lookalike("x-gateway_user", "X-Gateway-")
    assert not identity_lookalike("X_Other", "X-Gateway-")


def test_identical_warnings_fold_into_one_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import gateway.ops.logsetup
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("gateway.test-fold")
    logger.propagate = False
    handler = Collect()
    handler.addFilter(FoldRepeats())
    logger.addHandler(handler)
    try:
        for _ in range(1000):
            logger.warning("back end did not answer")
        logger.warning("another problem")
        assert records.count("back end did not answer") == 5
        assert "another problem" in records
        monkeypatch.setattr(gateway.ops.logsetup, "FOLD_WINDOW", 0.01)
        time.sleep(0.05)
        logger.warning("back end did not answer")  # a new window: the summary of the last one first
        assert any("repeated 995 more times" in r for r in records), records[-3:]
    finally:
        logger.removeHandler(handler)
