"""Reading the ``Authorization: Basic`` header in every form the legacy server's clients send.

Forms understood:
- ``Basic base64(login:password)`` — RFC 7617;
- ``Basic login:password`` — unencoded, as the vendor's own documentation shows. A colon is not
  in the base64 alphabet, so the two forms cannot be confused;
- an empty login (``:password``) — password-only login, as terminals do.
Errors say what is wrong with the header without quoting it: it holds a secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

# Big enough for a 256-character password in base64 with a long login; anything larger is
# not a credential, and refusing it early bounds the work done for an attacker.
MAX_AUTHORIZATION_LENGTH = 1024
_CONTROL = re.compile("[\x00-\x1f\x7f]")  # C0 controls and DEL


class CredentialError(ValueError):
    """The Authorization header is malformed; the message is safe to log and to send back."""


@dataclass(frozen=True)
class BasicCredentials:
    login: str  # "" for password-only login
    secret: str = ""

    def __repr__(self) -> str:  # never let a secret slip into a log through repr()
        return f"BasicCredentials(login={self.login!r}, secret=<hidden>)"

    @property
    def password_only(self) -> bool:
        return self.login == ""


def is_basic(value: str) -> bool:
    value = value.strip()
    return value[:6].lower() == "basic " or value.lower() == "basic"


def parse_authorization(value: str) -> BasicCredentials:
    """Split a Basic Authorization value into login and secret, or raise CredentialError."""
    if len(value) > MAX_AUTHORIZATION_LENGTH:
        raise CredentialError(f"the Authorization header is longer than {MAX_AUTHORIZATION_LENGTH} characters")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "basic":
        raise CredentialError("the Authorization header is not Basic; send Basic credentials")
    token = rest.strip()
    if not token:
        raise CredentialError("the Basic credentials are empty")
    if ":" in token:
        decoded = token  # the unencoded form
    else:
        decoded = _decode_base64(token)
    login, colon, secret = decoded.partition(":")
    if not colon:
        raise CredentialError("the Basic credentials have no ':' between user name and password")
    if _CONTROL.search(decoded):
        raise CredentialError("the Basic credentials contain control characters")
    if not secret:
        raise CredentialError("the password in the Basic credentials is empty")
    return BasicCredentials(login=login.strip(), secret=secret)


def _decode_base64(token: str) -> str:
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CredentialError("the Basic credentials are neither base64 nor 'login:password'") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Older Russian-locale clients encode in Windows-1251; a wrong guess just fails to verify.
        return raw.decode("cp1251", errors="strict") if _cp1251_ok(raw) else _undecodable()


def _cp1251_ok(raw: bytes) -> bool:
    try:
        raw.decode("cp1251")
    except UnicodeDecodeError:
        return False
    return True


def _undecodable() -> str:
    raise CredentialError("the Basic credentials are not UTF-8 text")
