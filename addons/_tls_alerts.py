"""Send the TLS alert OpenSSL wrote when a client handshake fails.

mitmproxy's ``TLSLayer.receive_handshake_data`` returns on an ``SSL.Error`` without reading the
alert OpenSSL put in its output buffer, so a terminal offering only TLS 1.1, no common cipher or
no client certificate sees the connection close with no reason (a bare EOF) instead of
``protocol_version``, ``handshake_failure`` or ``certificate_required``. The patch sends what is
pending before mitmproxy closes. ``install()`` checks the shape it wraps, like ``_listen``.
"""

from __future__ import annotations

import inspect
from typing import Any

from mitmproxy.proxy.layers import tls as _tls_layer

_original = _tls_layer.TLSLayer.receive_handshake_data
_installed = False


class MitmproxyMoved(RuntimeError):
    pass


def _receive_handshake_data(self: Any, data: bytes) -> Any:
    done, err = yield from _original(self, data)
    if not done and err is not None:
        yield from self.tls_interact()  # the alert, before on_handshake_error closes
    return done, err


def install() -> None:
    global _installed
    if _installed:
        return
    if list(inspect.signature(_original).parameters) != ["self", "data"] \
            or not hasattr(_tls_layer.TLSLayer, "tls_interact") \
            or "return False, err" not in inspect.getsource(_original):
        raise MitmproxyMoved("mitmproxy changed TLSLayer.receive_handshake_data; addons/_tls_alerts.py "
                             "must be updated")
    _tls_layer.TLSLayer.receive_handshake_data = _receive_handshake_data
    _installed = True
