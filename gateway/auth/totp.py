"""RFC 6238 time-based one-time passwords (SHA-1, 6 digits, 30-second steps: what every
authenticator app reads from an ``otpauth://`` QR code). Pure functions; the clock is a parameter."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import urllib.parse

STEP = 30
DIGITS = 6
# One step either side: a phone's clock a little off, or a code typed as it changes.
WINDOW = 1


def new_secret() -> str:
    """160 random bits in base32 without padding (RFC 4226 recommends 160)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").rstrip("=")


def _key(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def hotp(secret: str, counter: int) -> str:
    digest = hmac.new(_key(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** DIGITS).zfill(DIGITS)


def code_at(secret: str, now: float) -> str:
    return hotp(secret, int(now // STEP))


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step whose code this is (within the window), or None. Constant-time per candidate."""
    code = code.replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    current = int(now // STEP)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(hotp(secret, step), code):
            found = step
    return found


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    label = urllib.parse.quote(f"{issuer}:{account}")
    query = urllib.parse.urlencode({"secret": secret, "issuer": issuer, "digits": DIGITS, "period": STEP})
    return f"otpauth://totp/{label}?{query}"
