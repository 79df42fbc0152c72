"""The log formatters make each second's text once: the same lines as making it per record."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timezone

from gateway.ops.logsetup import JsonFormatter, TextFormatter, _SecondCache, _utc_second, iso_time


def _times(rng: random.Random) -> list[float]:
    # Ordinary times, and the edges where rounding to the microsecond moves to the next second.
    out = []
    for _ in range(20000):
        whole = rng.randrange(0, 2_000_000_000)
        out += [rng.uniform(0, 2e9), whole + 0.9999995, whole + 0.0004999, whole + 0.0000005, float(whole)]
    return out


def test_json_time_is_isoformat_to_the_millisecond() -> None:
    seconds = _SecondCache(_utc_second)
    for created in _times(random.Random(5)):
        assert iso_time(created, seconds) == datetime.fromtimestamp(created, timezone.utc).isoformat(
            timespec="milliseconds"), created


def test_text_lines_are_the_plain_formatters() -> None:
    cached = TextFormatter()
    plain = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    rng = random.Random(6)
    for created in sorted(_times(rng)[:20000]) + _times(rng)[:2000]:  # runs of one second, then jumps
        record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "line", None, None)
        record.created = created
        assert cached.format(record) == plain.format(record)


def test_json_record_carries_the_cached_time() -> None:
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "line", None, None)
    record.created = 1_700_000_000.25
    assert '"time": "2023-11-14T22:13:20.250+00:00"' in JsonFormatter().format(record)


def test_access_entry_names_never_clash_with_a_log_records_own() -> None:
    """addons/accesslog sets the entry's fields on the record directly (no extra= check): none of
    the names an entry can have may be one of a LogRecord's attributes."""
    from mitmproxy.test import tflow

    from addons.accesslog import entry

    flow = tflow.tflow(resp=True, err=True)
    flow.metadata.update({"gateway_device": "tsd-1", "gateway_reason": "why", "gateway_user": "u"})
    names = set(entry(flow))
    assert {"device", "reason", "error"} <= names
    own = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}
    assert not names & own
