"""The keyed hashes of gateway.store.keys: stable values, so an index built earlier still matches."""

from __future__ import annotations

import hashlib
import hmac

from gateway.store.keys import cache_key, credential_key

SECRET = bytes(range(32))


def test_credential_key_is_hmac_sha256_of_the_labelled_value() -> None:
    for value in ("Secret123", "Пароль1a", ""):
        expected = hmac.new(SECRET, b"credential\x00" + value.encode("utf-8"), hashlib.sha256).hexdigest()
        assert credential_key(SECRET, value) == expected


def test_cache_key_folds_the_login_case_and_keeps_the_secret_exact() -> None:
    expected = hmac.new(SECRET, b"cache\x00ivanov\x00Secret123", hashlib.sha256).hexdigest()
    assert cache_key(SECRET, "Ivanov", "Secret123") == expected
    assert cache_key(SECRET, "IVANOV", "Secret123") == expected
    assert cache_key(SECRET, "ivanov", "secret123") != expected
    assert cache_key(SECRET, "", "Secret123") != cache_key(SECRET, "Secret123", "")
