"""The admin listener in a gateway process: gateway/web/admin.py's app as a mitmproxy addon, its
/metrics read from the Master's metrics addon."""

from __future__ import annotations

from mitmproxy import ctx

from gateway.web.admin import PLAIN, AdminApp, Answer, encode

__all__ = ["PLAIN", "Admin", "Answer", "encode"]


class Admin(AdminApp):
    def metrics_addon(self) -> object | None:
        try:
            return ctx.master.addons.get("metrics")
        except AttributeError:
            return None
