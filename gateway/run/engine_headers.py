"""Header lookups without mitmproxy's layers of calls: one list comprehension over the raw fields.

Every ``headers.get("content-length")`` in mitmproxy goes ``Mapping.get`` → ``MultiDict.__getitem__``
→ ``Headers.get_all`` (two calls to make the name bytes) → ``MultiDict.get_all``, which calls the
Python function ``_kconv`` once per field. mitmproxy itself asks ~20 such questions per request
(``expected_http_body_size`` alone asks six, twice a request), so a request with 8 header fields
cost ~150 ``_kconv`` calls: the largest single item of mitmproxy's own per-request work
(docs/PERFORMANCE.md, issue 22). The replacements give the same answers (the same values, the same
folding with ", ", the same exceptions for str and bytes names; anything else goes to mitmproxy's
own code), checked against mitmproxy's on random header sets in tests/unit/run/test_engine_headers.py.

Installed by the runner when the engine is lean (``GATEWAY_LEAN=0`` leaves mitmproxy as it is).
"""

from __future__ import annotations

from typing import Any

from mitmproxy import http
from mitmproxy.coretypes import multidict

_ORIGINAL = {name: vars(http.Headers).get(name) for name in ("get_all", "__getitem__", "get", "__contains__")}


# The name → key conversion is written out in each function: a helper call per lookup was a
# fifth of what these save.


def get_all(self: http.Headers, name: Any) -> list[str]:
    if type(name) is str:
        key = name.encode("utf-8", "surrogateescape").lower()
    elif type(name) is bytes:
        key = name.lower()
    else:
        return _ORIGINAL["get_all"](self, name)  # type: ignore[misc, no-any-return]
    return [v.decode("utf-8", "surrogateescape") for k, v in self.fields if k.lower() == key]


def getitem(self: http.Headers, name: Any) -> str:
    if type(name) is str:
        key = name.encode("utf-8", "surrogateescape").lower()
    elif type(name) is bytes:
        key = name.lower()
    else:
        return multidict.MultiDict.__getitem__(self, name)  # type: ignore[no-any-return]
    values = [v.decode("utf-8", "surrogateescape") for k, v in self.fields if k.lower() == key]
    if not values:
        raise KeyError(name)
    return ", ".join(values)


def get(self: http.Headers, name: Any, default: Any = None) -> Any:
    if type(name) is str:
        key = name.encode("utf-8", "surrogateescape").lower()
    elif type(name) is bytes:
        key = name.lower()
    else:
        try:
            return multidict.MultiDict.__getitem__(self, name)
        except KeyError:
            return default
    values = [v.decode("utf-8", "surrogateescape") for k, v in self.fields if k.lower() == key]
    return ", ".join(values) if values else default


def contains(self: http.Headers, name: Any) -> bool:
    if type(name) is str:
        key = name.encode("utf-8", "surrogateescape").lower()
    elif type(name) is bytes:
        key = name.lower()
    else:
        try:
            multidict.MultiDict.__getitem__(self, name)
        except KeyError:
            return False
        return True
    for k, _v in self.fields:
        if k.lower() == key:
            return True
    return False


def install() -> None:
    """Idempotent; a mitmproxy whose Headers no longer has get_all of its own is left alone."""
    if _ORIGINAL["get_all"] is None:
        return
    http.Headers.get_all = get_all  # type: ignore[method-assign]
    http.Headers.__getitem__ = getitem  # type: ignore[method-assign]
    http.Headers.get = get  # type: ignore[method-assign]
    http.Headers.__contains__ = contains  # type: ignore[method-assign]


def uninstall() -> None:
    """mitmproxy's own lookups again (tests)."""
    for name, original in _ORIGINAL.items():
        if original is None:
            if name in vars(http.Headers):
                delattr(http.Headers, name)
        else:
            setattr(http.Headers, name, original)
