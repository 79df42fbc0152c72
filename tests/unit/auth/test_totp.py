"""RFC 6238 TOTP against the RFC's own test vectors, and the time window."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlparse

from gateway.auth import totp

# RFC 6238 appendix B, SHA-1: the key is the ASCII "12345678901234567890"; 8 digits there, 6 here
# (the last six of the RFC's eight: the truncation is the same).
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = {59: "94287082", 1111111109: "07081804", 1111111111: "14050471", 1234567890: "89005924",
               2000000000: "69279037", 20000000000: "65353130"}


def test_codes_match_the_rfc_vectors() -> None:
    for at, eight in RFC_VECTORS.items():
        assert totp.code_at(RFC_SECRET, at) == eight[-6:]


def test_a_code_is_accepted_one_step_either_side_only() -> None:
    now = 1_700_000_000.0
    secret = totp.new_secret()
    assert totp.matching_step(secret, totp.code_at(secret, now), now) == int(now // 30)
    assert totp.matching_step(secret, totp.code_at(secret, now - 30), now) == int(now // 30) - 1
    assert totp.matching_step(secret, totp.code_at(secret, now + 30), now) == int(now // 30) + 1
    assert totp.matching_step(secret, totp.code_at(secret, now - 90), now) is None
    assert totp.matching_step(secret, "12345", now) is None
    assert totp.matching_step(secret, "abcdef", now) is None


def test_the_provisioning_uri_carries_the_secret_and_issuer() -> None:
    uri = urlparse(totp.provisioning_uri("JBSWY3DPEHPK3PXP", "админ", "TLS gateway"))
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    query = parse_qs(uri.query)
    assert query["secret"] == ["JBSWY3DPEHPK3PXP"] and query["issuer"] == ["TLS gateway"]
