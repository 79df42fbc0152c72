"""One-time enrolment links in the core: made, redeemed once, refused when used, expired or
given a wrong code (which leaves the link usable), and the file's password is the code."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.certs.device_links import LinkRefused, create_link, link_exists, redeem
from gateway.store import DuplicateError, SqliteStore
from gateway.store.devices import read_registry


def test_link_is_redeemed_once_with_the_code_as_password(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    link = create_link(store, "tsd-01")
    assert link_exists(store, link.token) and read_registry(store).by_name("tsd-01") is None
    with pytest.raises(LinkRefused) as wrong:
        redeem(tmp_path, store, link.token, "notit123")
    assert not wrong.value.gone and link_exists(store, link.token)
    issued = redeem(tmp_path, store, link.token, link.code.upper())  # typed in capitals on a terminal
    key, cert, _ = pkcs12.load_key_and_certificates(issued.p12, link.code.encode())
    assert key is not None and cert is not None and read_registry(store).by_name("tsd-01") is not None
    with pytest.raises(LinkRefused) as used:
        redeem(tmp_path, store, link.token, link.code)
    assert used.value.gone
    with pytest.raises(DuplicateError):
        create_link(store, "tsd-01")  # an enrolled name is renewed, not enrolled again


def test_expired_link_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    link = create_link(store, "tsd-02", lifetime=0.2)
    time.sleep(0.3)
    with pytest.raises(LinkRefused) as expired:
        redeem(tmp_path, store, link.token, link.code)
    assert expired.value.gone and read_registry(store).by_name("tsd-02") is None
