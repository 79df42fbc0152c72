"""The process's one store: every part of a gateway process that reads or writes the state — the
login path, the console, the rate limit, the device list, the enrolment links, ACME — uses the
same guarded store (gateway.store.guarded), owned by the run layer and handed to the addons.

One store, so one connection pool to reconnect after an outage, one health record that /readyz,
the gauge and the log speak from, and one place where a reload's store settings take effect: a
reload that changes any of them (the backend, the URL, the sentinels, the master name, a
password) opens a new store for the new configuration (``for_config``); the old one is closed
once the new configuration is in force (``settle``), or the new one when the reload is refused
and the old configuration applied again.

At start a store that cannot be reached is waited for (a reboot during a Redis outage must not
leave the warehouse without its gateway). On a reload, a new store that cannot be reached refuses
the reload instead: the running store keeps serving rather than a typo taking every login down.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Hashable

from gateway.store import StoreError, open_for_gateway
from gateway.store.guarded import GuardedStore, forget

if TYPE_CHECKING:
    from gateway.config import GatewayConfig


def settings_key(cfg: GatewayConfig) -> Hashable:
    """Everything that decides which store a configuration means: the whole ``store`` section."""
    return (Path(cfg.state_dir), cfg.store)


class StoreHandle:
    def __init__(self) -> None:
        self._stores: dict[Hashable, GuardedStore] = {}
        self._lock = threading.Lock()
        self._settled = False  # a configuration has been in force: later ones are reloads

    def for_config(self, cfg: GatewayConfig) -> GuardedStore:
        """The store ``cfg`` names, opened on first use. A store that cannot be reached now is
        opened when it answers; a wrong key file or a damaged database raises (the configuration
        is refused)."""
        key = settings_key(cfg)
        with self._lock:
            store = self._stores.get(key)
            if store is None:
                store = open_for_gateway(cfg.state_dir, cfg.store, connect=not self._settled)
                problem = store.try_connect() if self._settled else None
                if problem is not None:
                    store.close(for_good=True)
                    raise StoreError(f"the new store {store.where} cannot be reached ({problem}); the running "
                                     "store keeps serving")
                self._stores[key] = store
            return store

    def settle(self, cfg: GatewayConfig) -> None:
        """``cfg`` is in force: close every store opened for another configuration."""
        key = settings_key(cfg)
        with self._lock:
            self._settled = True
            others = [store for k, store in self._stores.items() if k != key]
            self._stores = {k: store for k, store in self._stores.items() if k == key}
        self._retire(others)

    def close(self) -> None:
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        self._retire(stores)

    def _retire(self, stores: list[GuardedStore]) -> None:
        kept = {store.where for store in self._stores.values()}
        for store in stores:
            store.close(for_good=True)
            if store.where not in kept:
                forget(store.where)
