"""Request paths reduced to one unambiguous form before any access decision.

A reverse proxy and the back end behind it must agree on which resource a path names, or a
rule can be bypassed (``/api/v1/Docs/../Products``, ``/api/v1%2FProducts``). So the gateway
reads the path once, here, and either

* returns its normal form — percent-encoded unreserved characters decoded, hex digits
  upper-cased, dot segments resolved, repeated slashes merged (RFC 3986 §6.2.2) — which is both
  what the rules are matched against (fully decoded segments) and what is forwarded, so the back
  end sees exactly the path that was decided on; or
* refuses it (:class:`AmbiguousPath`, answered with 400) when two reasonable servers could read
  it differently: an encoded ``/`` or ``\\``, a backslash, a dot segment spelled with
  percent-escapes, ``..`` above the root, NUL or another control character, bytes that are not
  UTF-8, a double-encoded escape, a segment ending in a dot or space (Windows servers drop those).

Pure functions, no mitmproxy: the table in tests/test_paths.py is the specification.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# RFC 3986 §2.3: decoding these never changes what a URI means.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPE_LEFT = re.compile(r"%[0-9A-Fa-f]{2}")
_SURROGATE_ESCAPE = re.compile("[\udc80-\udcff]")  # how mitmproxy carries bytes that are not UTF-8
# A target the full reading would return unchanged: ASCII path characters other than '%', '.',
# ';', '\\' and space, no empty segment (no '//'), and a query of printable ASCII without '#'.
# Nearly every real request looks like this; tests/test_paths.py checks both readings agree.
_PLAIN_TARGET = re.compile(r"(/(?:[A-Za-z0-9_~!$&'()*+,=:@-]++(?:/[A-Za-z0-9_~!$&'()*+,=:@-]++)*+/?)?)"
                           r"(?:(\?)([\x20-\x22\x24-\x7e]*+))?")


class AmbiguousPath(ValueError):
    """The path cannot be read one way only; the reason is safe to show to the client."""

    status = 400

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class NormalPath:
    """A request target after normalisation.

    ``path`` is what goes to the back end (still percent-encoded where it must be), ``segments``
    are the fully decoded segments rules are matched against, ``query`` is untouched.
    """

    path: str
    segments: tuple[str, ...]
    query: str | None

    @property
    def target(self) -> str:
        """Path and query as they go on the request line."""
        return self.path if self.query is None else f"{self.path}?{self.query}"

    @property
    def decoded(self) -> str:
        """The decoded path, for messages to people."""
        text = "/" + "/".join(self.segments)
        return text


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def _ascii_lookalike(char: str) -> bool:
    """A non-ASCII character whose upper-case, lower-case, case-fold or NFKC form holds ASCII letters."""
    if char.isascii():
        return False
    return any(any(c.isascii() and c.isalpha() for c in mapped)
               for mapped in (char.upper(), char.lower(), char.casefold(), unicodedata.normalize("NFKC", char)))


def _decode_segment(raw: str) -> tuple[str, str, bool]:
    """One raw segment → (form to forward, decoded text, whether it held any escape)."""
    forward: list[str] = []
    decoded = bytearray()
    had_escape = False
    i = 0
    while i < len(raw):
        char = raw[i]
        if char != "%":
            forward.append(char)
            decoded += char.encode("utf-8")
            i += 1
            continue
        pair = raw[i + 1:i + 3].encode("ascii", "replace")
        if len(pair) != 2 or not all(b in _HEX for b in pair):
            raise AmbiguousPath("a '%' in the path is not followed by two hex digits")
        value = int(pair, 16)
        had_escape = True
        if value == 0x2F:
            raise AmbiguousPath("the path contains an encoded '/' (%2F)")
        if value == 0x5C:
            raise AmbiguousPath("the path contains an encoded '\\' (%5C)")
        if value < 0x20 or value == 0x7F:
            raise AmbiguousPath("the path contains an encoded control character or NUL")
        forward.append(chr(value) if value in _UNRESERVED else "%" + pair.decode().upper())
        decoded.append(value)
        i += 3
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise AmbiguousPath("the path is not valid UTF-8 after percent-decoding") from None
    if any(_is_control(c) for c in text):
        raise AmbiguousPath("the path contains a control character")
    if not text.isascii() and any(_ascii_lookalike(c) for c in text):
        # 'apı'.upper() == 'API', 'Productſ'.upper() == 'PRODUCTS', 'K' (Kelvin) lower-cases to 'k':
        # a back end that maps case would route these where the rules never looked.
        raise AmbiguousPath("the path contains a letter that a server's case mapping turns into a Latin letter")
    if had_escape and _ESCAPE_LEFT.search(text):
        # %252F is %2F after one decoding and '/' after two: servers differ on how many they do.
        raise AmbiguousPath("the path contains a double-encoded character (%25 followed by hex)")
    return "".join(forward), text, had_escape


def normalise_path(target: str) -> NormalPath:
    """Normalise a request target (path with optional query, as mitmproxy's request.path).

    Raises AmbiguousPath when the path cannot be read unambiguously.
    """
    plain = _PLAIN_TARGET.fullmatch(target)
    if plain is None:
        return normalise_path_in_full(target)
    path, has_query, query = plain.groups()
    # Nothing to decode, resolve or merge: the segments are the path's own.
    segments = tuple(path.split("/")[1:]) if path != "/" else ()
    return NormalPath(path=path, segments=segments, query=query if has_query else None)


def normalise_path_in_full(target: str) -> NormalPath:
    """normalise_path without the shortcut for plain targets: every step, for any target."""
    if _SURROGATE_ESCAPE.search(target):
        raise AmbiguousPath("the request target is not valid UTF-8")
    if "#" in target:
        raise AmbiguousPath("the request target contains '#' (a fragment is never sent to a server)")
    raw_path, has_query, query = target.partition("?")
    if not raw_path.startswith("/"):
        raise AmbiguousPath("the request target is not a path starting with '/'")
    if "\\" in raw_path:
        raise AmbiguousPath("the path contains a backslash")
    if ";" in raw_path:
        # Path parameters (/api/v1;x/Products): some servers strip them, some keep them.
        raise AmbiguousPath("the path contains ';' (path parameters are read differently by different servers)")
    if any(_is_control(c) for c in raw_path):
        raise AmbiguousPath("the path contains a control character or NUL")
    if any(_is_control(c) for c in query):
        raise AmbiguousPath("the query contains a control character or NUL")

    forward: list[str] = []
    decoded: list[str] = []
    raw_segments = raw_path.split("/")[1:]
    trailing_slash = False
    for index, raw in enumerate(raw_segments):
        last = index == len(raw_segments) - 1
        if raw == "":
            # Repeated slashes collapse; a final empty segment is the trailing slash.
            trailing_slash = last and bool(decoded)
            continue
        out, text, had_escape = _decode_segment(raw)
        if text in (".", ".."):
            if had_escape:
                raise AmbiguousPath("the path contains a dot segment written with percent-escapes")
            if text == "..":
                if not decoded:
                    raise AmbiguousPath("the path climbs above the root with '..'")
                decoded.pop()
                forward.pop()
            # A resolved dot segment names its directory, so the result ends with '/'.
            trailing_slash = last and bool(decoded)
            continue
        if text.endswith((".", " ")):
            raise AmbiguousPath("a path segment ends with a dot or a space (Windows servers drop those)")
        forward.append(out)
        decoded.append(text)
        trailing_slash = False
    path = "/" + "/".join(forward) + ("/" if trailing_slash else "")
    segments = tuple(decoded) + (("",) if trailing_slash else ())
    return NormalPath(path=path, segments=segments, query=query if has_query else None)
