"""The read-only admin web console: page rendering and the ring of recent security events.

Pure: no mitmproxy, no sockets. ``addons/console.py`` authenticates, gathers the facts and
hands them to ``render_page``.
"""

from gateway.console.events import SECURITY_EVENTS, EventRing, SecurityEvent
from gateway.console.pages import (
    PAGES, BaseView, CertificateFacts, EnrolmentView, GroupView, IpListsView, UserView, render_error, render_page,
)

__all__ = [
    "SECURITY_EVENTS", "EventRing", "SecurityEvent", "PAGES", "BaseView", "CertificateFacts", "EnrolmentView",
    "GroupView", "IpListsView", "UserView", "render_error", "render_page",
]
