"""Folding repeated security events (issue 24 point 3): a flood costs a few lines and a count."""

from __future__ import annotations

import logging

from gateway.ops.eventfold import FOLD_AFTER, KIND_CEILING, WINDOW, FoldEvents
from gateway.utils.display import shown


def _record(event: str, client: str, at: float) -> logging.LogRecord:
    record = logging.LogRecord("gateway.limits", logging.WARNING, __file__, 1, "%s: refused", (client,), None)
    record.event = event
    record.client = client
    record.created = at
    return record


def test_a_flood_per_kind_and_address_is_folded_into_a_count_and_lockouts_never() -> None:
    written: list[logging.LogRecord] = []
    fold = FoldEvents(written.append, clock=lambda: 1000.0 + WINDOW + 1)
    kept = [fold.filter(_record("refused-head", f"203.0.113.{i % 4}", 1000.0 + i * 0.001)) for i in range(4000)]
    assert sum(kept) == 4 * FOLD_AFTER
    lockouts = [fold.filter(_record("lockout", "203.0.113.1", 1000.5)) for _ in range(50)]
    assert all(lockouts)  # every one, whatever the flood
    assert fold.filter(_record("refused-head", "203.0.113.9", 1000.0 + WINDOW + 1.5))  # a new window
    summaries = [r for r in written if getattr(r, "folded", 0)]
    assert sorted(r.folded for r in summaries) == [1000 - FOLD_AFTER] * 4
    assert all(r.event == "refused-head" and "(folded)" in r.getMessage() for r in summaries)


def test_many_addresses_meet_the_kinds_ceiling() -> None:
    written: list[logging.LogRecord] = []
    fold = FoldEvents(written.append)
    kept = sum(fold.filter(_record("ip-denied", f"2001:db8::{i:x}", 50.0)) for i in range(5000))
    assert kept == KIND_CEILING
    fold.flush()
    assert sum(r.folded for r in written) == 5000 - KIND_CEILING


def test_shown_escapes_bidi_and_control_characters() -> None:
    assert shown("иванов") == "иванов"
    assert shown("adm\u202enimda\x1b[2J\u2066") == "adm\\u202enimda\\x1b[2J\\u2066"
