"""mitmproxy's options, read at the speed of a plain attribute.

mitmproxy's proxy core reads its options on every request (``stream_large_bodies`` four times,
``validate_inbound_headers``, ``body_size_limit``, …: 10 reads a request), and every read goes
through ``OptManager.__getattr__`` (after a failed normal lookup) and ``copy.deepcopy`` of the
value: ~1.5 us each. ``GatewayOptions`` keeps the current value of every option holding an
immutable value (text, number, true/false, nothing — for which a deep copy is the value itself)
as a plain instance attribute, refreshed *before* every change notification, so every reader —
subscribers and ``configure`` hooks included — sees the new value. Options holding lists or
other mutable values still go through mitmproxy's copying read.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import options, optmanager

_IMMUTABLE = (str, int, float, bool, bytes, type(None))


class GatewayOptions(options.Options):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        notify = self.changed.send

        def refresh_then_notify(*args: Any, **kw: Any) -> Any:
            self._refresh_plain_values()
            return notify(*args, **kw)

        # Every change of a value (update, reset, rollback, add_option) is followed by this send.
        self.changed.send = refresh_then_notify  # type: ignore[method-assign]
        self._refresh_plain_values()

    def _refresh_plain_values(self) -> None:
        plain = self.__dict__
        for name, option in plain["_options"].items():
            value = option.default if option.value is optmanager.unset else option.value
            if type(value) in _IMMUTABLE:
                plain[name] = value
            else:
                plain.pop(name, None)
