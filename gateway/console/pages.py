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
from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape
from markupsafe import Markup

from gateway.console.i18n import translator
from gateway.store.base import ROLES

# (path, nav label); the order is the nav bar's.
PAGES = (
    ("/console", "Bases"),
    ("/console/users", "Users"),
    ("/console/iplists", "IP lists"),
    ("/console/certificates", "Certificates"),
    ("/console/events", "Events"),
    ("/console/enrolment", "Enrolment"),
)
TITLES = {
    "/console": "Bases", "/console/users": "Users and groups", "/console/iplists": "IP lists and bans",
    "/console/iplists/edit": "IP lists", "/console/certificates": "Certificates",
    "/console/events": "Security events", "/console/enrolment": "Device enrolment", "/console/login": "Console login",
}
TEMPLATE_OF = {
    "/console": "bases.html", "/console/users": "users.html", "/console/iplists": "iplists.html",
    "/console/iplists/edit": "iplist_edit.html", "/console/certificates": "certificates.html",
    "/console/events": "events.html", "/console/enrolment": "enrolment.html", "/console/login": "login.html",
}

STYLE = """body{font-family:sans-serif;margin:0;color:#222}
header{background:#234;padding:.5em 1em;display:flex;align-items:center;flex-wrap:wrap}
header a{color:#fff;margin-right:1.2em;text-decoration:none}header a.here{font-weight:bold;text-decoration:underline}
header .right{margin-left:auto;color:#ccd}header .right a{margin:0 .4em}header .right b{color:#fff}header form{display:inline}
main{padding:1em}table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#eee}
.bad{color:#b00;font-weight:bold}.ok{color:#070}.warn{color:#a60;font-weight:bold}
tr.bad-line td{background:#fdd}code{word-break:break-all}.qr svg{width:14em;height:14em}
.flash{padding:.6em 1em;margin-bottom:1em;border-radius:4px;white-space:pre-line}
.flash.ok{background:#dfd;color:#050}.flash.bad{background:#fdd}
form.inline{display:inline-block;margin:.1em .4em .1em 0}fieldset{margin-bottom:1em;max-width:52em}
label{display:inline-block;margin:.2em .6em .2em 0}input[type=text],input[type=password]{width:11em}
textarea{width:100%;max-width:52em;height:18em;font-family:monospace}pre{background:#f6f6f6;padding:.6em}
ul.problems li{margin-bottom:.3em}.pager a{margin:0 .5em}
"""


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


_LAYOUT = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{ _(title) }} — {{ _("gateway") }}</title>
<link rel="stylesheet" href="/console/static/console.css">
</head><body>
<header>{% if who %}{% for path, label in pages %}<a href="{{ path }}"{% if path == here or (path != "/console" and here.startswith(path + "/")) %} class="here"{% endif %}>{{ _(label) }}</a>{% endfor %}{% endif %}
<span class="right" id="language">{{ _("Language") }}:
{% if lang == "ru" %}<b>RU</b> <a href="?{{ keep }}lang=en" hreflang="en" id="lang-en">EN</a>{% else %}<a href="?{{ keep }}lang=ru" hreflang="ru" id="lang-ru">RU</a> <b>EN</b>{% endif %}
{% if who %} · {{ _("Logged in as") }} <b id="who">{{ who }}</b>
<form method="post" action="/console/logout"><input type="hidden" name="csrf" value="{{ csrf }}"><button id="logout">{{ _("Log out") }}</button></form>{% endif %}</span></header>
<main><h1>{{ _(title) }}</h1>
{% if flash %}<div class="flash {{ 'ok' if flash.ok else 'bad' }}" id="flash">{{ flash.text }}</div>{% endif %}
{% block body %}{% endblock %}
</main></body></html>
"""

_LOGIN = """{% extends "layout.html" %}{% block body %}
<form method="post" action="/console/login" id="login">
<p><label for="username">{{ _("User name") }}</label><br><input type="text" id="username" name="username" autocomplete="username" required autofocus></p>
<p><label for="password">{{ _("Password") }}</label><br><input type="password" id="password" name="password" autocomplete="current-password" required></p>
<p><button type="submit">{{ _("Log in") }}</button></p>
</form>{% endblock %}"""

_CSRF = '<input type="hidden" name="csrf" value="{{ csrf }}">'

_BASES = """{% extends "layout.html" %}{% block body %}
{% if not bases %}<p>{{ _("No bases configured.") }}</p>{% else %}
<table id="bases"><tr><th>{{ _("Name") }}</th><th>ID</th><th>{{ _("URLs") }}</th><th>HTTPS</th>
<th>user_auth</th><th>whitelist_only</th><th>{{ _("Certificate") }}</th><th>{{ _("Back end") }}</th></tr>
{% for b in bases %}<tr>
<td class="name">{{ b.name }}</td><td>{{ b.id }}</td>
<td>{{ b.data_url }}{% if b.print_url %}<br>{{ _("print") }}: {{ b.print_url }}{% endif %}</td>
<td>{{ _("on") if b.https else _("off") }}</td><td>{{ _("yes") if b.user_auth else _("no") }}</td>
<td>{{ _("yes") if b.whitelist_only else _("no") }}</td>
<td>{% if b.certificate %}{{ b.certificate.subject }} ({{ b.certificate.kind }})<br>
{{ _("until") }} {{ b.certificate.not_after.strftime("%Y-%m-%d") }},
<span class="{{ 'bad' if b.certificate.days_left < 0 else ('warn' if b.certificate.days_left < 30 else 'ok') }} days-left">{{ b.certificate.days_left }} {{ _("days left") }}</span>
{% elif b.certificate_problem %}<span class="bad">{{ b.certificate_problem }}</span>{% else %}—{% endif %}</td>
<td>{% if b.backend_problems %}{% for p in b.backend_problems %}<span class="bad">{{ p }}</span><br>{% endfor %}
{% else %}<span class="ok">{{ _("reachable") }}</span>{% endif %}</td>
</tr>{% endfor %}</table>{% endif %}
<h2>{{ _("Problems found by gateway check") }}</h2>
{% set ns = namespace(any=false) %}
<ul class="problems" id="problems">{% for c in checks %}{% for p in c.problems %}{% set ns.any = true %}
<li><b>{{ c.name }}</b> ({{ c.address }}): {{ p }}</li>{% endfor %}{% endfor %}</ul>
{% if not ns.any %}<p class="ok" id="no-problems">{{ _("No problems: every check passed.") }}</p>{% endif %}
{% endblock %}"""

_USERS = """{% extends "layout.html" %}{% block body %}
<h2>{{ _("Groups") }}</h2>
{% if not groups %}<p>{{ _("No groups.") }}</p>{% else %}
<table id="groups"><tr><th>ID</th><th>{{ _("Name") }}</th><th>{{ _("Role") }}</th><th>{{ _("Document types") }}</th><th>{{ _("Users") }}</th><th>{{ _("Actions") }}</th></tr>
{% for g in groups %}<tr data-group="{{ g.name }}"><td>{{ g.id }}</td><td class="name">{{ g.name }}</td><td class="role">{{ g.role }}</td><td class="doc-types">{{ g.doc_types | join(", ") }}</td><td>{{ g.users }}</td>
<td><form method="post" action="/console/groups/edit" class="inline edit-group">""" + _CSRF + """<input type="hidden" name="group" value="{{ g.id }}">
<select name="role" aria-label="{{ _('Role') }}">{% for r in roles %}<option{% if r == g.role %} selected{% endif %}>{{ r }}</option>{% endfor %}</select>
<input type="text" name="doc_types" value="{{ g.doc_types | join(', ') }}" aria-label="{{ _('Document types') }}">
<label><input type="checkbox" name="offline"{% if g.offline %} checked{% endif %}>{{ _("Offline work") }}</label>
<button>{{ _("Save") }}</button></form>
<form method="post" action="/console/groups/remove" class="inline remove-group">""" + _CSRF + """<input type="hidden" name="group" value="{{ g.id }}"><button>{{ _("Remove") }}</button></form></td></tr>
{% endfor %}</table>{% endif %}
<form method="post" action="/console/groups/add" id="add-group"><fieldset><legend>{{ _("Add a group") }}</legend>""" + _CSRF + """
<label>{{ _("Name") }} <input type="text" name="name" required></label>
<label>{{ _("Role") }} <select name="role">{% for r in roles %}<option>{{ r }}</option>{% endfor %}</select></label>
<label>{{ _("Document types") }} ({{ _("comma-separated") }}) <input type="text" name="doc_types"></label>
<label><input type="checkbox" name="offline">{{ _("Offline work") }}</label>
<button>{{ _("Add") }}</button></fieldset></form>

<h2>{{ _("Users") }}</h2>
{% if not users %}<p>{{ _("No users.") }}</p>{% else %}
<table id="users"><tr><th>ID</th><th>{{ _("Name") }}</th><th>{{ _("Group") }}</th><th>{{ _("Role") }}</th><th>{{ _("Barcode") }}</th><th>{{ _("Actions") }}</th></tr>
{% for u in users %}<tr data-user="{{ u.name }}"><td>{{ u.id }}</td><td class="name">{{ u.name }}</td><td class="group">{{ u.group }}</td><td class="role">{{ u.role }}</td>
<td class="barcode">{{ _("yes") if u.has_barcode else _("no") }}</td>
<td><form method="post" action="/console/users/password" class="inline reset-password">""" + _CSRF + """<input type="hidden" name="user" value="{{ u.id }}">
<input type="password" name="password" autocomplete="new-password" placeholder="{{ _('New password') }}" aria-label="{{ _('New password') }}">
<input type="password" name="password2" autocomplete="new-password" placeholder="{{ _('Repeat') }}" aria-label="{{ _('Repeat the password') }}">
<label><input type="checkbox" name="force">{{ _("Accept a weak password") }}</label><button>{{ _("Reset password") }}</button></form><br>
<form method="post" action="/console/users/barcode" class="inline set-barcode">""" + _CSRF + """<input type="hidden" name="user" value="{{ u.id }}">
<input type="password" name="barcode" autocomplete="off" placeholder="{{ _('New barcode') }}" aria-label="{{ _('New barcode') }}">
<input type="password" name="barcode2" autocomplete="off" placeholder="{{ _('Repeat') }}" aria-label="{{ _('Repeat') }}"><button>{{ _("Set barcode") }}</button></form>
{% if u.has_barcode %}<form method="post" action="/console/users/barcode" class="inline remove-barcode">""" + _CSRF + """<input type="hidden" name="user" value="{{ u.id }}"><input type="hidden" name="remove" value="on"><button>{{ _("Remove barcode") }}</button></form>{% endif %}<br>
<form method="post" action="/console/users/move" class="inline move-user">""" + _CSRF + """<input type="hidden" name="user" value="{{ u.id }}">
{{ _("to group") }} <select name="group">{% for g in groups %}<option value="{{ g.id }}"{% if g.id == u.group_id %} selected{% endif %}>{{ g.name }}</option>{% endfor %}</select><button>{{ _("Move") }}</button></form>
<form method="post" action="/console/users/remove" class="inline remove-user">""" + _CSRF + """<input type="hidden" name="user" value="{{ u.id }}"><button>{{ _("Remove") }}</button></form></td></tr>
{% endfor %}</table>{% endif %}
<form method="post" action="/console/users/add" id="add-user"><fieldset><legend>{{ _("Add a user") }}</legend>""" + _CSRF + """
<label>{{ _("Name") }} <input type="text" name="name" required></label>
<label>{{ _("Group") }} <select name="group">{% for g in groups %}<option value="{{ g.id }}">{{ g.name }}</option>{% endfor %}</select></label><br>
<label>{{ _("Password") }} <input type="password" name="password" autocomplete="new-password"></label>
<label>{{ _("Repeat the password") }} <input type="password" name="password2" autocomplete="new-password"></label>
<label><input type="checkbox" name="force">{{ _("Accept a weak password") }}</label><br>
<label>{{ _("Barcode") }} <input type="password" name="barcode" autocomplete="off"></label>
<label>{{ _("Repeat") }} <input type="password" name="barcode2" autocomplete="off"></label>
<label>{{ _("Description") }} <input type="text" name="description"></label>
<button>{{ _("Add") }}</button></fieldset></form>
{% endblock %}"""

_IPLISTS = """{% extends "layout.html" %}{% block body %}
<h2>{{ _("List files") }}</h2>
<table id="lists"><tr><th>{{ _("Kind") }}</th><th>{{ _("applies to") }}</th><th>{{ _("File") }}</th><th>{{ _("Entries") }}</th><th>{{ _("Bad lines") }}</th><th></th></tr>
{% for f in lists.files %}<tr data-list="{{ f.key }}"><td>{{ f.kind }}.dat</td><td>{{ f.base or _("all bases") }}</td><td><code>{{ f.path }}</code></td>
<td>{% if f.problem %}<span class="bad">{{ f.problem }}</span>{% elif f.present %}{{ f.entries }}{% else %}—{% endif %}</td>
<td class="{{ 'bad' if f.bad_lines else '' }}">{{ f.bad_lines }}</td>
<td><a href="/console/iplists/edit?list={{ f.key | urlencode }}">{{ _("View and edit") }}</a></td></tr>{% endfor %}
</table>
<h2>{{ _("Current bans") }}</h2>
{% if not lists.bans %}<p id="no-bans">{{ _("Nothing is refused right now.") }}</p>{% else %}
<table id="bans"><tr><th>{{ _("Kind") }}</th><th>{{ _("Who") }}</th><th>{{ _("Failures") }}</th><th>{{ _("Time left") }}</th><th></th></tr>
{% for ban in lists.bans %}<tr data-target="{{ ban.target }}"><td>{{ _(ban.kind) }}</td><td>{{ ban.target }}</td><td>{{ ban.failures }}</td><td class="time-left">{{ ban.retry_after }} {{ _("s") }}</td>
<td><form method="post" action="/console/bans/lift" class="inline lift">""" + _CSRF + """<input type="hidden" name="target" value="{{ ban.target }}"><button>{{ _("Lift") }}</button></form></td></tr>{% endfor %}
</table>{% endif %}
<form method="post" action="/console/bans/lift" id="lift-any"><fieldset><legend>{{ _("Lift a ban") }}</legend>""" + _CSRF + """
<input type="text" name="target" placeholder="{{ _('address or user name') }}" aria-label="{{ _('address or user name') }}" required>
<button>{{ _("Lift") }}</button></fieldset></form>
{% endblock %}"""

_IPLIST_EDIT = """{% extends "layout.html" %}{% block body %}
<p><a href="/console/iplists">← {{ _("Back to the lists") }}</a></p>
<h2>{{ edit.kind }}.dat — {{ edit.base or _("all bases") }}</h2>
<p><code id="path">{{ edit.path }}</code>{% if not edit.present %} — {{ _("file does not exist yet (an empty list)") }}{% endif %}<br>
{{ _("encoding") }}: {{ edit.encoding }}, {{ _("line ends") }}: {{ edit.newline }}</p>
{% if edit.unsaved_errors %}<div class="flash bad" id="unsaved"><p>{{ _("The list has bad lines; they are ignored when the list applies. Save anyway?") }}</p>
<ul>{% for e in edit.unsaved_errors %}<li>{{ e }}</li>{% endfor %}</ul>
<form method="post" action="/console/iplists/save" id="confirm-save">""" + _CSRF + """<input type="hidden" name="list" value="{{ edit.key }}">
<input type="hidden" name="confirm" value="yes"><textarea name="text" hidden>{{ edit.text }}</textarea><button>{{ _("Save anyway") }}</button></form></div>{% endif %}
<table id="lines"><tr><th>{{ _("Line") }}</th><th>{{ _("Text") }}</th><th>{{ _("Error") }}</th></tr>
{% for l in edit.lines %}<tr{% if l.error %} class="bad-line"{% endif %} data-line="{{ l.number }}"><td>{{ l.number }}</td><td><code>{{ l.text }}</code></td><td class="bad">{{ l.error }}</td></tr>{% endfor %}
</table>
<form method="post" action="/console/iplists/save" id="save-list">""" + _CSRF + """<input type="hidden" name="list" value="{{ edit.key }}">
<textarea name="text" id="list-text" spellcheck="false">{{ edit.text }}</textarea><br><button>{{ _("Save") }}</button></form>
{% endblock %}"""

_CERTIFICATES = """{% extends "layout.html" %}{% block body %}
{% for c in certs.served %}<h2>{% if c.base_id %}{{ _("Own certificate of base") }} {{ c.label }} ({{ c.base_id }}){% else %}{{ _("Default certificate") }}{% endif %}</h2>
{% if c.problem %}<p class="bad">{{ c.problem }}</p>{% else %}<pre class="certificate" data-base="{{ c.base_id }}">{{ c.text }}</pre>{% endif %}
{% endfor %}
<form method="post" action="/console/certificates/upload" enctype="multipart/form-data" id="upload"><fieldset><legend>{{ _("Upload a certificate") }}</legend>""" + _CSRF + """
<label>{{ _("for") }} <select name="base"><option value="">{{ _("default (bases without their own)") }}</option>
{% for id, name in certs.bases %}<option value="{{ id }}">{{ name }} ({{ id }})</option>{% endfor %}</select></label><br>
<label>{{ _("PFX / P12 file, or PEM certificate") }} <input type="file" name="cert" required></label><br>
<label>{{ _("PEM private key (when not in the file above)") }} <input type="file" name="key"></label><br>
<label>{{ _("PFX or key password") }} <input type="password" name="password" autocomplete="off"></label><br>
<button>{{ _("Upload and install") }}</button></fieldset></form>
<h2>{{ _("Local CA") }}</h2>
{% if certs.ca_fingerprint %}<p>SHA-256: <code>{{ certs.ca_fingerprint }}</code></p>
<p>{{ _("Download") }}: <a href="/console/ca.pem" id="ca-pem" download>ca.pem</a> · <a href="/console/ca.der" id="ca-der" download>ca.der</a></p>
{% else %}<p>{{ _("No local CA: a certificate of your own is configured.") }}</p>{% endif %}
{% endblock %}"""

_EVENTS = """{% extends "layout.html" %}{% block body %}
<form method="get" action="/console/events" id="filter">
<label>{{ _("Event") }} <select name="kind"><option value="">{{ _("any") }}</option>{% for k in kinds %}<option{% if k == wanted.kind %} selected{% endif %}>{{ k }}</option>{% endfor %}</select></label>
<label>{{ _("Base") }} <input type="text" name="base" value="{{ wanted.base }}"></label>
<label>{{ _("address") }} <input type="text" name="address" value="{{ wanted.address }}"></label>
<label>{{ _("user") }} <input type="text" name="user" value="{{ wanted.user }}"></label>
<button>{{ _("Filter") }}</button></form>
{% if not found.events %}<p id="no-events">{{ _("No events match.") }}</p>{% else %}
<table id="events"><tr><th>{{ _("Time (UTC)") }}</th><th>{{ _("Event") }}</th><th>{{ _("Base") }}</th><th>{{ _("Client") }}</th><th>{{ _("user") }}</th><th>{{ _("Message") }}</th></tr>
{% for e in found.events %}<tr class="{{ e.event }}"><td>{{ e.at.strftime("%Y-%m-%d %H:%M:%S") }}</td><td>{{ e.event }}</td><td>{{ e.base }}</td>
<td>{{ e.client }}</td><td>{{ e.admin or e.user }}</td><td>{{ e.message }}</td></tr>{% endfor %}</table>
<p class="pager">{{ _("Page") }} {{ found.page }} {{ _("of") }} {{ found.pages }} ({{ found.total }})
{% if found.page > 1 %}<a href="?{{ query }}&amp;page={{ found.page - 1 }}" id="newer">{{ _("Newer") }}</a>{% endif %}
{% if found.page < found.pages %}<a href="?{{ query }}&amp;page={{ found.page + 1 }}" id="older">{{ _("Older") }}</a>{% endif %}</p>
{% endif %}
{% endblock %}"""

_ENROLMENT = """{% extends "layout.html" %}{% block body %}
{% if enrolment.ca_fingerprint %}<p>{{ _("Local CA") }}: {{ enrolment.ca_subject }}
{% if enrolment.ca_not_after %}, {{ _("until") }} {{ enrolment.ca_not_after.strftime("%Y-%m-%d") }}{% endif %}</p>
<p>SHA-256: <code id="fingerprint">{{ enrolment.ca_fingerprint }}</code></p>
<p>{{ _("Download") }}: <a href="/console/ca.pem" download>ca.pem</a> · <a href="/console/ca.der" download>ca.der</a></p>
{% else %}<p>{{ _("No local CA: a certificate of your own is configured.") }}</p>{% endif %}
{% if enrolment.enabled %}<p>{{ _("Enrolment page") }}: <code>{{ enrolment.url }}</code></p>
{% if enrolment.qr_svg %}<div class="qr">{{ qr }}</div>{% endif %}
{% else %}<p>{{ _("Enrolment is off (enrolment: {enabled: true} turns it on).") }}</p>{% endif %}
{% endblock %}"""

_ERROR = """{% extends "layout.html" %}{% block body %}<p id="error">{{ text }}</p>{% endblock %}"""

_env = Environment(
    loader=DictLoader({
        "layout.html": _LAYOUT, "login.html": _LOGIN, "bases.html": _BASES, "users.html": _USERS,
        "iplists.html": _IPLISTS, "iplist_edit.html": _IPLIST_EDIT, "certificates.html": _CERTIFICATES,
        "events.html": _EVENTS, "enrolment.html": _ENROLMENT, "error.html": _ERROR,
    }),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a missing value is a bug to see in tests, not an empty cell
)


def render_page(path: str, *, lang: str = "en", who: str = "", csrf: str = "", flash: Flash | None = None,
                keep: str = "", **facts: Any) -> str:
    """The page at ``path`` (see TEMPLATE_OF) with its facts, in ``lang``, for the admin ``who``.

    ``keep``: the page's query (``list=...&``) that the language switch keeps."""
    extra: dict[str, Any] = {}
    if path == "/console/enrolment":
        extra["qr"] = Markup(facts["enrolment"].qr_svg)
    if path == "/console/users":
        extra["roles"] = ROLES
    return _env.get_template(TEMPLATE_OF[path]).render(
        pages=PAGES, here=path, title=TITLES[path], lang=lang, _=translator(lang), who=who, csrf=csrf,
        flash=flash, keep=keep, **facts, **extra)


def render_error(title: str, text: str, *, lang: str = "en", who: str = "", csrf: str = "") -> str:
    return _env.get_template("error.html").render(pages=PAGES, here="", title=title, text=text, lang=lang,
                                                  _=translator(lang), who=who, csrf=csrf, flash=None, keep="")
