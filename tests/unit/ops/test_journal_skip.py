"""The journal handler passes over records that are no console event (the access log's, one a
request) before its fold filter and lock, and still writes every console event."""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.ops.journal import JournalHandler, read_journal


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "%s", ("line",), None)
    record.__dict__.update(extra)
    return record


def test_access_records_are_passed_over_and_events_written(tmp_path: Path) -> None:
    handler = JournalHandler(tmp_path)
    try:
        for verdict in ("allowed", "denied-auth", "throttled", "denied-policy"):
            for _ in range(50):
                assert handler.handle(_record(verdict=verdict, client="10.0.0.9")) is False
        assert not (tmp_path / "events.jsonl").exists() or read_journal(tmp_path) == []
        for _ in range(3):
            handler.handle(_record(event="login-failed", client="10.0.0.9", user="u"))
        events = read_journal(tmp_path)
        assert [e.event for e in events] == ["login-failed"] * 3 and events[0].client == "10.0.0.9"
    finally:
        handler.close()
