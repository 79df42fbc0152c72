"""The admin web console: pages, sessions, the login step, the actions behind its buttons
(each the CLI's own core function), the shared event journal and the two languages.

Pure: no mitmproxy, no sockets. ``gateway/web/console.py`` handles HTTP (sessions, CSRF, Origin),
gathers the facts and hands them to ``render_page``.
"""

from gateway.console.pages import (
    PAGES, BaseView, CertificateFacts, EnrolmentView, GroupView, IpListsView, UserView, render_error, render_page,
)

__all__ = [
    "PAGES", "BaseView", "CertificateFacts", "EnrolmentView",
    "GroupView", "IpListsView", "UserView", "render_error", "render_page",
]
