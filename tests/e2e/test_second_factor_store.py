"""The console's second factor kept in both stores (SQLite and a real Redis): enrolment by a
first code, single use of every code across processes, recovery codes stored hashed, reset."""

from __future__ import annotations

from typing import Iterator

import pytest

from gateway.auth import secondfactor, totp
from gateway.store import SqliteStore, Store
from gateway.store.redis import RedisStore

NOW = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    opened: Store
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "gateway.db")
    else:
        server = request.getfixturevalue("redis_server")
        opened = RedisStore(server.url, prefix="gw-2fa-test:")
    yield opened
    opened.close()


def test_enrol_verify_once_and_reset(store: Store) -> None:
    secret = totp.new_secret()
    assert secondfactor.enrol(store, "7", secret, "000000" if totp.code_at(secret, NOW) != "000000" else "111111",
                              NOW) is None
    assert secondfactor.load(store, "7") is None
    codes = secondfactor.enrol(store, "7", secret, totp.code_at(secret, NOW), NOW)
    assert codes is not None and len(codes) == 8 and len(set(codes)) == 8
    raw = store.get_shared("second-factor:7") or ""
    assert secret in raw and not any(code in raw for code in codes)  # recovery codes only as digests
    # the enrolment's code is used up; the next step's code works once
    assert secondfactor.verify(store, "7", totp.code_at(secret, NOW), NOW) == ""
    later = NOW + 30
    assert secondfactor.verify(store, "7", totp.code_at(secret, later), later) == "totp"
    assert secondfactor.verify(store, "7", totp.code_at(secret, later), later + 1) == ""
    assert secondfactor.verify(store, "7", codes[0].upper(), later) == "recovery"
    assert secondfactor.verify(store, "7", codes[0], later) == ""
    factor = secondfactor.load(store, "7")
    assert factor is not None and len(factor.recovery) == 7
    assert secondfactor.verify(store, "7", "", later) == ""
    assert secondfactor.remove(store, "7") and not secondfactor.remove(store, "7")
    assert secondfactor.verify(store, "7", codes[1], later) == ""
