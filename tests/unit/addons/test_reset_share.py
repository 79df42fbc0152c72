"""The reset ledger's trip to the store and back (addons/reset_share.py), on a real SQLite store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from addons import _engine_patches
from addons.reset_share import ResetShare
from gateway.store import SqliteStore, StoreUnavailable
from gateway.traffic.limits import RESET_KEY, ResetLedger


class DownStore:
    def add_strikes(self, *args: object) -> None:
        raise StoreUnavailable("redis://127.0.0.1:1 refused the connection")


def test_counts_go_to_the_store_in_one_batch_and_a_store_outage_keeps_this_process_s_bans(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = ResetLedger()
    monkeypatch.setattr(_engine_patches, "reset_ledger", ledger)
    share = ResetShare()
    share._limit = 500
    store = SqliteStore(tmp_path / "gateway.db")
    loop = asyncio.new_event_loop()
    try:
        share._store = DownStore()  # type: ignore[assignment]
        now = time.monotonic()
        banned = [ledger.record("198.51.100.7", now, 500) for _ in range(501)]
        assert banned[-1]
        loop.run_until_complete(share.share_once(loop))
        assert ledger.banned_for("198.51.100.7", time.monotonic()) > 50  # still refused here
        # The store is back: the ban made during the outage reaches it, for every other process.
        share._store = store  # type: ignore[assignment]
        loop.run_until_complete(share.share_once(loop))
        assert set(store.short_bans(time.time())) == {RESET_KEY + "198.51.100.7"}
        # Lifted in the store (another machine's `gateway bans lift`): ended here at the next batch.
        store.lift_short_ban(RESET_KEY + "198.51.100.7")
        loop.run_until_complete(share.share_once(loop))
        assert ledger.banned_for("198.51.100.7", time.monotonic()) == 0.0
    finally:
        share._pool.shutdown()
        loop.close()
        store.close()
