"""The device CA, device certificates and the checks the handshake makes, as plain calls."""

from __future__ import annotations

import dataclasses
import datetime
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.certs.device_service import enrol, expiring, renew, revoke
from gateway.certs.devices import (
    check_device_certificate, issue_device_certificate, load_or_create_device_ca, pkcs12_bytes,
)
from gateway.certs.load import CertError
from gateway.store import NotFoundError, SqliteStore
from gateway.store.devices import read_registry

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc)


def test_device_ca_is_made_once_even_when_two_processes_race(tmp_path: Path) -> None:
    made: list = []
    threads = [threading.Thread(target=lambda: made.append(load_or_create_device_ca(tmp_path))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({ca.certificate.fingerprint(ca.certificate.signature_hash_algorithm) for ca in made}) == 1
    assert (tmp_path / "device-ca" / "ca.key").stat().st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == ["device-ca"]  # no half-built folder left


def test_checks_issuer_dates_and_usage(tmp_path: Path) -> None:
    ca = load_or_create_device_ca(tmp_path / "a", NOW)
    other = load_or_create_device_ca(tmp_path / "b", NOW)
    leaf, _key = issue_device_certificate(ca, "tsd-01", days=30, now=NOW)
    assert check_device_certificate(leaf, [ca.certificate], NOW) == ""
    assert check_device_certificate(leaf, [other.certificate], NOW) == "bad-signature"  # same subject, other key
    assert check_device_certificate(leaf, [], NOW) == "unknown-ca"
    assert check_device_certificate(leaf, [ca.certificate], NOW + datetime.timedelta(days=31)) == "expired"
    assert check_device_certificate(leaf, [ca.certificate], NOW - datetime.timedelta(days=1)) == "not-yet-valid"
    with pytest.raises(CertError, match="device name"):
        issue_device_certificate(ca, "../etc", now=NOW)


def test_pkcs12_forms(tmp_path: Path) -> None:
    ca = load_or_create_device_ca(tmp_path, NOW)
    for legacy in (False, True):
        leaf, key = issue_device_certificate(ca, "tsd", rsa_key=legacy, now=NOW)
        data = pkcs12_bytes("tsd", leaf, key, ca.certificate, "pw", legacy=legacy)
        loaded_key, loaded, chain = pkcs12.load_key_and_certificates(data, b"pw")
        assert loaded == leaf and chain == [ca.certificate]
        assert isinstance(loaded_key, rsa.RSAPrivateKey if legacy else ec.EllipticCurvePrivateKey)
        with pytest.raises(ValueError):
            pkcs12.load_key_and_certificates(data, b"wrong")


def test_enrol_revoke_renew_in_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    first = enrol(tmp_path, store, "tsd-01", user="7", days=20, now=NOW)
    assert len(first.password) == 16 and first.password not in repr(first.device)
    renewed = renew(tmp_path, store, "tsd-01", now=NOW)
    registry = read_registry(store)
    assert registry.by_name("tsd-01").serial == renewed.device.serial
    assert first.device.serial in registry.refused_serials()  # the renewed-away certificate
    assert registry.devices_of("7") == (registry.by_name("tsd-01"),)
    assert [d.name for d in expiring(store, 30, NOW)] == []  # the renewal runs 365 days
    revoke(store, "tsd-01", NOW)
    registry = read_registry(store)
    assert renewed.device.serial in registry.refused_serials() and registry.devices_of("7") == ()
    with pytest.raises(NotFoundError):
        revoke(store, "nobody", NOW)
    short = enrol(tmp_path, store, "tsd-02", days=10, now=NOW)
    assert [d.name for d in expiring(store, 30, NOW)] == [short.device.name]
    store.close()


def test_registry_indexes_answer_as_the_scans() -> None:
    """by_name, by_serial and device_names_of come from indexes built once per registry: the same
    answers as scanning the devices (first match wins), and a changed registry is a new index."""
    import random

    from gateway.store.devices import Device, Registry

    rng = random.Random(9)
    for _ in range(300):
        devices = tuple(Device(name=rng.choice("abcde"), serial=rng.choice(["01", "02", "0a", "ff"]), issued=0.0,
                               expires=1.0, user=rng.choice(["", "u1", "u2"]), revoked=rng.choice([0.0, 5.0]))
                        for _ in range(rng.randint(0, 8)))
        registry = Registry(devices)
        for name in "abcdez":
            assert registry.by_name(name) == next((d for d in devices if d.name == name), None)
        for serial in ("01", "02", "0a", "ff", "00"):
            assert registry.by_serial(serial) == next((d for d in devices if d.serial == serial), None)
        for user in ("", "u1", "u2", "u3"):
            assert registry.device_names_of(user) == {d.name for d in registry.devices_of(user)}
    first = Registry((Device("t1", "01", 0.0, 1.0, user="u1"),))
    assert first.device_names_of("u1") == {"t1"}
    revoked = Registry(tuple(dataclasses.replace(d, revoked=9.0) for d in first.devices))
    assert revoked.device_names_of("u1") == frozenset() and first.device_names_of("u1") == {"t1"}
