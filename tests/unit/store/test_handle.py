"""StoreHandle: one store per process, the same object for every part that asks with the same
store settings; any change of them (Sentinel fields too) opens a new one, and the one not in
force is closed once a configuration settles — for good, so a late call cannot reopen it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig, parse_config
from gateway.store import StoreError, guarded
from gateway.store.handle import StoreHandle

BASE = {"id": "b1", "name": "Склад", "data": {"listen": 18443, "backend": "http://127.0.0.1:1"}}


@pytest.fixture(autouse=True)
def fresh_health(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guarded, "_health", {})


def config(tmp_path: Path, **extra: Any) -> GatewayConfig:
    return parse_config({"state_dir": str(tmp_path / "state"), "bases": [BASE], **extra}, tmp_path / "gateway.yaml")


def sentinel_config(tmp_path: Path, sentinels: list[str], master: str = "gateway") -> GatewayConfig:
    # Nothing listens there: the store is opened later, when it answers (never raised at start).
    return config(tmp_path, store={"backend": "redis", "sentinels": sentinels, "sentinel_master": master})


def test_every_part_of_the_process_gets_the_same_store_for_the_same_settings(tmp_path: Path) -> None:
    handle = StoreHandle()
    try:
        first = handle.for_config(config(tmp_path))
        # A reload that changes something else (the throttle) keeps the store and its connections.
        assert handle.for_config(config(tmp_path, throttle={"ip_failures": 7})) is first
        handle.settle(config(tmp_path))
        assert handle.for_config(config(tmp_path)) is first
        assert first.version() >= 0
    finally:
        handle.close()


def test_a_sentinel_change_opens_a_new_store_and_settling_closes_the_old_for_good(tmp_path: Path) -> None:
    handle = StoreHandle()
    try:
        old_cfg = sentinel_config(tmp_path, ["127.0.0.1:1"])
        old = handle.for_config(old_cfg)
        for changed in (sentinel_config(tmp_path, ["127.0.0.1:1", "127.0.0.1:2"]),
                        sentinel_config(tmp_path, ["127.0.0.1:1"], master="other")):
            new = handle.for_config(changed)
            assert new is not old, "a Sentinel change must reach the store"
            assert "127.0.0.1:1" in new.where
        # A refused reload: the old configuration is applied again and settles; the new stores go.
        assert handle.for_config(old_cfg) is old
        handle.settle(old_cfg)
        handle.settle(sentinel_config(tmp_path, ["127.0.0.1:1", "127.0.0.1:2"]))
        # The old one is closed for good: a call still in flight after the reload is refused,
        # never a connection opened again behind the handle's back.
        with pytest.raises(StoreError, match="closed by a reload"):
            old.version()
    finally:
        handle.close()


def test_the_addons_of_one_process_share_one_store(tmp_path: Path) -> None:
    from addons._context import set_current_config
    from gateway.run.runner import build_addons

    handle = StoreHandle()
    cfg = config(tmp_path, limits={"rate": "10r/s", "burst": 5},
                 bases=[{**BASE, "user_auth": True}])
    set_current_config(cfg)
    addons = {type(a).__name__: a for a in build_addons(handle)}
    users = [addons[name] for name in ("ClientAuth", "RateLimit", "Auth", "ResetShare")]
    try:
        for addon in users:
            addon.apply_config(cfg)
        store = handle.for_config(cfg)
        assert addons["ClientAuth"]._store is store
        assert addons["RateLimit"]._store is store
        assert addons["Auth"]._state.store is store
        assert addons["ResetShare"]._store is store
    finally:
        for addon in users:
            addon.done()
        handle.close()


def test_a_reload_to_a_store_that_cannot_be_reached_is_refused_and_leaves_no_outage(tmp_path: Path) -> None:
    handle = StoreHandle()
    try:
        running = config(tmp_path)
        store = handle.for_config(running)
        handle.settle(running)
        with pytest.raises(StoreError, match="cannot be reached .*the running store keeps serving"):
            handle.for_config(sentinel_config(tmp_path, ["127.0.0.1:1"]))
        assert guarded.problems() == []  # /readyz: nothing down, the running store serves
        assert handle.for_config(running) is store and store.version() >= 0
    finally:
        handle.close()
