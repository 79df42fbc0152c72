"""Masking secrets before anything is written to a log.

The legacy API takes credentials in the URL (``GET /api/v1/session?username=..&password=..``)
and every client sends ``Authorization``; neither may reach a log file, where secrets outlive
their owners. Masking keeps the shape (parameter names, auth scheme, cookie names) so a log
still shows what happened.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping
from urllib.parse import unquote

MASK = "***"

# Query parameter names (case-insensitive) whose value is masked: exactly one of these, or
# made of words one of which is (access_token, apiKey, user-password, auth_code...).
SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "pass", "passcode", "passphrase", "pin", "token", "secret",
    "key", "apikey", "barcode", "auth", "authorization", "credential", "credentials",
    "session", "sid", "signature", "sig", "otp",
})
# Name fragments masked wherever they appear: long enough never to be an innocent word.
SECRET_FRAGMENTS = ("password", "passwd", "token", "secret", "barcode", "apikey", "api_key", "credential")

SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-gateway-session",
    "x-api-key", "x-auth-token", "x-access-token", "x-csrf-token", "x-xsrf-token",
})
_HEADER_FRAGMENTS = ("token", "secret", "password", "api-key", "apikey", "session")
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,30}) ")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")


def is_secret_name(name: str) -> bool:
    """Whether a query parameter of this name holds a secret."""
    decoded = unquote(name.replace("+", " ")).strip()
    lowered = decoded.lower()
    if lowered in SECRET_WORDS or any(f in lowered for f in SECRET_FRAGMENTS):
        return True
    return any(word.lower() in SECRET_WORDS for word in _WORD.findall(decoded))


def _redact_query(query: str) -> str:
    # ';' is split on too: some servers still treat it as a separator, and over-masking a log
    # line costs nothing while under-masking leaks a password.
    parts = re.split(r"([&;])", query)
    out = []
    for part in parts:
        name, eq, _ = part.partition("=")
        out.append(f"{name}={MASK}" if eq and is_secret_name(name) else part)
    return "".join(out)


def redact_url(path_with_query: str) -> str:
    """A path or URL with the values of secret-looking query parameters (and any user:password@) masked."""
    url = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", path_with_query)
    base, hash_, fragment = url.partition("#")
    path, question, query = base.partition("?")
    # Path parameters (/a;password=x) carry name=value pairs as well.
    if ";" in path:
        path = "/".join(_redact_query(segment) for segment in path.split("/"))
    if not question:
        return f"{path}{hash_}{fragment}"
    return f"{path}?{_redact_query(query)}{hash_}{fragment}"


def _is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_HEADERS or any(f in lowered for f in _HEADER_FRAGMENTS)


def _redact_header_value(name: str, value: str) -> str:
    lowered = name.lower()
    if lowered in ("authorization", "proxy-authorization"):
        # The scheme says which login form was used; only what follows it is secret.
        scheme = _SCHEME.match(value)
        return f"{scheme.group(1)} {MASK}" if scheme else MASK
    if lowered == "cookie":
        names = [p.split("=", 1)[0].strip() for p in value.split(";") if p.strip()]
        return "; ".join(f"{n}={MASK}" for n in names)
    if lowered == "set-cookie":
        return f"{value.split('=', 1)[0].strip()}={MASK}"
    return MASK


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]) -> dict[str, str]:
    """Headers as a dict for a log, secret values masked.

    Accepts a mapping (a dict, mitmproxy's Headers) or (name, value) pairs; repeated headers are
    joined with ', ' (Cookie with '; ').
    """
    fields = getattr(headers, "fields", None)  # mitmproxy's Headers: every line, repeats kept
    if isinstance(fields, tuple):
        pairs: Iterable[tuple[str | bytes, str | bytes]] = fields
    elif isinstance(headers, Mapping):
        pairs = headers.items()
    else:
        pairs = headers
    result: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name, value = _text(raw_name), _text(raw_value)
        if _is_secret_header(name):
            value = _redact_header_value(name, value)
        key = next((k for k in result if k.lower() == name.lower()), name)
        if key in result:
            value = result[key] + ("; " if name.lower() == "cookie" else ", ") + value
        result[key] = value
    return result
