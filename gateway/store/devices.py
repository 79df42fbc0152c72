"""Enrolled devices and their revocation, kept in the store so every worker and every machine
sharing it sees a revocation at its next poll (the handshake checks the revoked serials).

One JSON document under one shared name: devices are few (terminals of a warehouse), every
reader gets the whole list in one atomic read, and writers take a short lease so two admins'
changes never overwrite each other.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Callable

from gateway.store.base import DuplicateError, NotFoundError, Store, StoreError

DEVICES_KEY = "devices:registry"
LOCK_NAME = "devices:write"
LOCK_SECONDS = 10.0


@dataclass(frozen=True)
class Device:
    name: str
    serial: str  # hexadecimal, as ``openssl x509 -serial`` prints it (lower case)
    issued: float
    expires: float
    user: str = ""
    revoked: float = 0.0  # when; 0 = in use
    # Serials of certificates this name held before a renewal: refused like revoked ones.
    retired: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registry:
    devices: tuple[Device, ...] = ()

    # Indexes built once per registry, which never changes (a change writes a new one): a login
    # asks which devices its user is bound to on every request, a handshake which device a
    # serial is. The first device of a name or serial wins, as the scans did.
    @cached_property
    def _by_name(self) -> dict[str, Device]:
        index: dict[str, Device] = {}
        for d in self.devices:
            index.setdefault(d.name, d)
        return index

    @cached_property
    def _by_serial(self) -> dict[str, Device]:
        index: dict[str, Device] = {}
        for d in self.devices:
            index.setdefault(d.serial, d)
        return index

    @cached_property
    def _bound(self) -> dict[str, frozenset[str]]:
        names: dict[str, set[str]] = {}
        for d in self.devices:
            if not d.revoked:
                names.setdefault(d.user, set()).add(d.name)
        return {user: frozenset(found) for user, found in names.items()}

    def by_name(self, name: str) -> Device | None:
        return self._by_name.get(name)

    def by_serial(self, serial: str) -> Device | None:
        return self._by_serial.get(serial)

    def device_names_of(self, user_id: str) -> frozenset[str]:
        """The names of the user's devices in use (``devices_of``'s names), from the index."""
        return self._bound.get(user_id, frozenset())

    def refused_serials(self) -> frozenset[str]:
        refused = {s for d in self.devices for s in d.retired}
        refused |= {d.serial for d in self.devices if d.revoked}
        return frozenset(refused)

    def devices_of(self, user_id: str) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.user == user_id and not d.revoked)


def read_registry(store: Store) -> Registry:
    raw = store.get_shared(DEVICES_KEY)
    if not raw:
        return Registry()
    try:
        rows = json.loads(raw)
        return Registry(tuple(Device(**{**row, "retired": tuple(row.get("retired", ()))}) for row in rows))
    except (ValueError, TypeError) as e:
        raise StoreError(f"the device list in the store is unreadable ({e})") from None


def _update(store: Store, change: Callable[[Registry], Registry]) -> Registry:
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + LOCK_SECONDS
    while not store.try_lock(LOCK_NAME, owner, LOCK_SECONDS):
        if time.monotonic() > deadline:
            raise StoreError("another change to the device list is in progress; try again")
        time.sleep(0.05)
    try:
        registry = change(read_registry(store))
        store.put_shared(DEVICES_KEY, json.dumps([asdict(d) for d in registry.devices]))
        return registry
    finally:
        store.unlock(LOCK_NAME, owner)


def add_device(store: Store, device: Device) -> None:
    def change(registry: Registry) -> Registry:
        old = registry.by_name(device.name)
        if old is not None and not old.revoked:
            raise DuplicateError(f"device {device.name!r} exists; renew it (gateway device renew "
                                 f"{device.name}) or revoke it first")
        retired = (old.retired + (old.serial,)) if old is not None else ()
        kept = tuple(d for d in registry.devices if d.name != device.name)
        return Registry(kept + (replace(device, retired=retired),))
    _update(store, change)


def renew_device(store: Store, name: str, serial: str, issued: float, expires: float) -> Device:
    """The new certificate replaces the old one, which is refused from now on."""
    def change(registry: Registry) -> Registry:
        old = _existing(registry, name)
        if old.revoked:
            raise StoreError(f"device {name!r} is revoked; enrol it again with gateway device add {name}")
        new = replace(old, serial=serial, issued=issued, expires=expires, retired=old.retired + (old.serial,))
        return Registry(tuple(new if d.name == name else d for d in registry.devices))
    return _existing(_update(store, change), name)


def revoke_device(store: Store, name: str, at: float) -> Device:
    def change(registry: Registry) -> Registry:
        old = _existing(registry, name)
        if old.revoked:
            return registry
        return Registry(tuple(replace(d, revoked=at) if d.name == name else d for d in registry.devices))
    return _existing(_update(store, change), name)


def _existing(registry: Registry, name: str) -> Device:
    device = registry.by_name(name)
    if device is None:
        raise NotFoundError(f"no device named {name!r}; gateway device list shows the enrolled ones")
    return device


SEEN_PREFIX = "devices:seen:"


def mark_seen(store: Store, name: str, at: float) -> None:
    """When the device last connected: one small value per device, so a connection never
    rewrites the device list (nor waits for its lease)."""
    store.put_shared(SEEN_PREFIX + name, repr(at))


def last_seen(store: Store, name: str) -> float:
    raw = store.get_shared(SEEN_PREFIX + name)
    try:
        return float(raw) if raw else 0.0
    except ValueError:
        return 0.0
