"""Enrol, renew and revoke devices: the device CA's certificates and the store's device list
together, as the ``gateway device`` verbs (and the console) call them."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from gateway.certs.authority import now_utc
from gateway.certs.devices import (
    DEFAULT_DEVICE_DAYS, check_device_name, issue_device_certificate, load_or_create_device_ca,
    new_p12_password, pkcs12_bytes, serial_text,
)
from gateway.store import Store
from gateway.store.devices import Device, add_device, renew_device, revoke_device, read_registry


@dataclass(frozen=True)
class Issued:
    device: Device
    p12: bytes
    password: str  # shown once, never stored


def enrol(state_dir: Path, store: Store, name: str, *, user: str = "", days: int = DEFAULT_DEVICE_DAYS,
          legacy: bool = False, now: datetime.datetime | None = None, password: str = "") -> Issued:
    check_device_name(name)
    now = now or now_utc()
    ca = load_or_create_device_ca(state_dir, now)
    certificate, key = issue_device_certificate(ca, name, days=days, rsa_key=legacy, now=now)
    password = password or new_p12_password()
    p12 = pkcs12_bytes(name, certificate, key, ca.certificate, password, legacy=legacy)
    device = Device(name=name, serial=serial_text(certificate), issued=now.timestamp(),
                    expires=certificate.not_valid_after_utc.timestamp(), user=user)
    add_device(store, device)
    return Issued(device, p12, password)


def renew(state_dir: Path, store: Store, name: str, *, days: int = DEFAULT_DEVICE_DAYS, legacy: bool = False,
          now: datetime.datetime | None = None) -> Issued:
    now = now or now_utc()
    registry = read_registry(store)
    if registry.by_name(name) is None:
        renew_device(store, name, "", 0, 0)  # raises the store's "no device named ..." error
    ca = load_or_create_device_ca(state_dir, now)
    certificate, key = issue_device_certificate(ca, name, days=days, rsa_key=legacy, now=now)
    password = new_p12_password()
    p12 = pkcs12_bytes(name, certificate, key, ca.certificate, password, legacy=legacy)
    device = renew_device(store, name, serial_text(certificate), now.timestamp(),
                          certificate.not_valid_after_utc.timestamp())
    return Issued(device, p12, password)


def revoke(store: Store, name: str, now: datetime.datetime | None = None) -> Device:
    return revoke_device(store, name, (now or now_utc()).timestamp())


def expiring(store: Store, within_days: int, now: datetime.datetime | None = None) -> list[Device]:
    """Devices in use whose certificate ends within ``within_days`` (or has ended)."""
    limit = (now or now_utc()).timestamp() + within_days * 86400
    return [d for d in read_registry(store).devices if not d.revoked and d.expires <= limit]
