"""The console's HTML pages: Jinja2 templates with autoescaping, one layout and a nav bar.

Every value shown comes in through the small frozen views below, built by the caller from the
configuration and the store; a view has no field for a hash or a secret, so a page cannot show
one. The templates live here as strings so that an installed wheel needs no package data.
Labels are English in the templates, translated by ``_`` (gateway/console/i18n.py). No inline
script or style: the Content-Security-Policy forbids both; the style sheet is ``STYLE``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from gateway.console import bases as base_form
from gateway.console.i18n import translator
from gateway.utils.messages import localize, localize_lines
from gateway.store.base import ROLES

# (path, nav label); the order is the nav bar's.
PAGES = (
    ("/console", "Dashboard"),
    ("/console/bases", "Bases"),
    ("/console/users", "Users"),
    ("/console/iplists", "IP lists"),
    ("/console/certificates", "Certificates"),
    ("/console/events", "Events"),
    ("/console/enrolment", "Enrolment"),
    ("/console/devices", "Devices"),
    ("/console/2fa", "Two-step login"),
)
TITLES = {
    "/console": "Dashboard", "/console/bases": "Bases", "/console/bases/edit": "Base settings",
    "/console/bases/remove": "Remove a base", "/console/users": "Users and groups", "/console/iplists": "IP lists and bans",
    "/console/iplists/edit": "IP lists", "/console/certificates": "Certificates",
    "/console/events": "Security events", "/console/enrolment": "Device enrolment", "/console/login": "Console login",
    "/console/devices": "Devices (client certificates)", "/console/2fa": "Two-step login", "/console/confirm": "Please confirm",
}
TEMPLATE_OF = {
    "/console": "dashboard.html", "/console/bases": "bases.html", "/console/bases/edit": "base_edit.html",
    "/console/bases/remove": "base_remove.html", "/console/users": "users.html", "/console/iplists": "iplists.html",
    "/console/iplists/edit": "iplist_edit.html", "/console/certificates": "certificates.html",
    "/console/events": "events.html", "/console/enrolment": "enrolment.html", "/console/login": "login.html",
    "/console/devices": "devices.html", "/console/2fa": "twofactor.html", "/console/confirm": "confirm.html",
}

CERT_CHOICES = (("default", "Local CA (the gateway's default certificate)"), ("files", "Certificate files (imported)"),
                ("acme", "ACME (Let's Encrypt or the configured directory)"))

STYLE = (files("gateway.console") / "static" / "console.css").read_text(encoding="utf-8")


@dataclass(frozen=True)
class CertificateFacts:
    subject: str
    kind: str  # "self-signed", "local CA", "CA-signed"
    not_after: datetime.datetime
    days_left: int


@dataclass(frozen=True)
class BaseView:
    id: str
    name: str
    data_url: str
    print_url: str  # "" when the base has no print port
    https: bool
    user_auth: bool
    whitelist_only: bool
    backend_problems: tuple[str, ...] = ()  # empty: every back end accepted a connection
    certificate: CertificateFacts | None = None
    certificate_problem: str = ""


@dataclass(frozen=True)
class DeviceView:
    name: str
    user: str
    serial: str
    issued: str
    expires: str
    days_left: int
    revoked: str  # a date, or "" while in use
    last_seen: str = ""  # when it last connected (UTC, to the minute), "" never


@dataclass(frozen=True)
class IssuedView:
    """A device file just issued: shown on this one answer only, never stored or logged."""

    name: str
    file_name: str
    data_url: str  # data:application/x-pkcs12;base64,...
    password: str


@dataclass(frozen=True)
class LinkView:
    """A one-time enrolment link just made: its QR code and code, shown on this one answer only."""

    name: str
    url: str
    code: str
    qr_svg: str
    until: str  # HH:MM, the server's local time


@dataclass(frozen=True)
class CheckView:
    """`gateway check`'s verdict of one base (or side listener): each problem with its fix."""

    name: str
    address: str
    problems: tuple[str, ...]


@dataclass(frozen=True)
class GroupView:
    id: str
    name: str
    role: str
    doc_types: tuple[str, ...]
    users: int = 0
    offline: bool = False


@dataclass(frozen=True)
class UserView:
    id: str
    name: str
    group: str
    role: str
    has_barcode: bool
    group_id: str = ""


@dataclass(frozen=True)
class BanView:
    kind: str  # "address" or "user"
    target: str
    failures: int
    retry_after: int  # seconds


@dataclass(frozen=True)
class ListFileView:
    key: str
    path: str
    kind: str
    base: str  # "" for a global list
    present: bool
    entries: int
    bad_lines: int
    problem: str = ""


@dataclass(frozen=True)
class IpListsView:
    files: tuple[ListFileView, ...]
    bans: tuple[BanView, ...]


@dataclass(frozen=True)
class ListLine:
    number: int
    text: str
    error: str = ""


@dataclass(frozen=True)
class ListEditView:
    key: str
    path: str
    kind: str
    base: str
    present: bool
    encoding: str
    newline: str
    lines: tuple[ListLine, ...]
    text: str
    unsaved_errors: tuple[str, ...] = ()  # set: the text has bad lines and waits for a confirmation


@dataclass(frozen=True)
class CertificateView:
    base_id: str  # "" for the default
    label: str
    path: str
    text: str
    problem: str = ""


@dataclass(frozen=True)
class CertificatesView:
    served: tuple[CertificateView, ...]
    bases: tuple[tuple[str, str], ...]  # (id, name) for the upload target list
    ca_fingerprint: str = ""


@dataclass(frozen=True)
class EnrolmentView:
    enabled: bool
    url: str = ""
    ca_fingerprint: str = ""
    ca_subject: str = ""
    ca_not_after: datetime.datetime | None = None
    qr_svg: str = ""  # produced by qrcode from our own URL, inserted unescaped


@dataclass(frozen=True)
class Flash:
    ok: bool
    text: str
    block: str = ""  # lines to show as they are (YAML to paste), below the text


@dataclass(frozen=True)
class TwoFactorView:
    enrolled: bool
    required: bool  # the admin listener is reachable off loopback: every admin needs one
    recovery_left: int = 0
    secret: str = ""  # while enrolling: the new secret, for typing in by hand
    qr_svg: str = ""  # while enrolling: the otpauth:// URI as a QR code, inserted unescaped
    recovery_codes: tuple[str, ...] = ()  # shown once, right after enrolment


@dataclass(frozen=True)
class ConfirmView:
    """A removal waiting for a second click: the question, and the form to send again with confirm=yes."""

    question: str
    action: str
    fields: tuple[tuple[str, str], ...]
    back: str

# The pages are files (console/templates/*.html), found through the package, so an installed gateway has them.
_env = Environment(
    loader=PackageLoader("gateway.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a missing value is a bug to see in tests, not an empty cell
)


def render_page(path: str, *, lang: str = "en", who: str = "", csrf: str = "", flash: Flash | None = None,
                keep: str = "", kept: dict[str, str] | None = None, **facts: Any) -> str:
    """The page at ``path`` (see TEMPLATE_OF) with its facts, in ``lang``, for the admin ``who``.

    ``keep``: the page's query (``list=...&``) that the language switch keeps; ``kept``: what the
    admin typed into a form that came back refused (never a password), by field name."""
    extra: dict[str, Any] = {}
    if path == "/console/enrolment":
        extra["qr"] = Markup(facts["enrolment"].qr_svg)
    if path == "/console/users":
        extra["roles"] = ROLES
    if path == "/console/bases/edit":
        extra.update(fields=base_form.FIELDS, flags=base_form.FLAGS, cert_choices=CERT_CHOICES)
    if path == "/console/2fa":
        extra["qr"] = Markup(facts["twofactor"].qr_svg)
    return _env.get_template(TEMPLATE_OF[path]).render(
        pages=PAGES, here=path, title=TITLES[path], lang=lang, _=translator(lang),
        _m=lambda text: localize(lang, text), _ml=lambda text: localize_lines(lang, text), who=who, csrf=csrf,
        flash=flash, keep=keep, kept=kept or {}, **facts, **extra)


def render_error(title: str, text: str, *, lang: str = "en", who: str = "", csrf: str = "") -> str:
    return _env.get_template("error.html").render(pages=PAGES, here="", title=title, text=text, lang=lang,
                                                  _=translator(lang), who=who, csrf=csrf, flash=None, keep="",
                                                  kept={})
