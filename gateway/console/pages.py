"""The console's HTML pages: Jinja2 templates with autoescaping, one layout and a nav bar.

Every value shown comes in through the small frozen views below, built by the caller from the
configuration and the store; a view has no field for a hash or a secret, so a page cannot show
one. The templates live here as strings so that an installed wheel needs no package data.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape
from markupsafe import Markup

# (path, nav label, page title); the order is the nav bar's.
PAGES = (
    ("/console", "Базы / Bases", "Базы / Bases"),
    ("/console/users", "Пользователи / Users", "Пользователи и группы / Users and groups"),
    ("/console/iplists", "IP-списки / IP lists", "IP-списки и блокировки / IP lists and bans"),
    ("/console/events", "События / Events", "Последние события безопасности / Recent security events"),
    ("/console/enrolment", "Сертификат / Enrolment", "Подключение устройств / Device enrolment"),
)
TEMPLATE_OF = {
    "/console": "bases.html", "/console/users": "users.html", "/console/iplists": "iplists.html",
    "/console/events": "events.html", "/console/enrolment": "enrolment.html",
}


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
class GroupView:
    id: str
    name: str
    role: str
    doc_types: tuple[str, ...]


@dataclass(frozen=True)
class UserView:
    name: str
    group: str
    role: str
    has_barcode: bool


@dataclass(frozen=True)
class BanView:
    kind: str  # "address" or "user"
    target: str
    failures: int
    retry_after: int  # seconds


@dataclass(frozen=True)
class IpListsView:
    sizes: tuple[tuple[str, int], ...]  # (list file, entries)
    bans: tuple[BanView, ...]


@dataclass(frozen=True)
class EnrolmentView:
    enabled: bool
    url: str = ""
    ca_fingerprint: str = ""
    ca_subject: str = ""
    ca_not_after: datetime.datetime | None = None
    qr_svg: str = ""  # produced by qrcode from our own URL, inserted unescaped


_LAYOUT = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{ title }} — шлюз / gateway</title>
<style>
body{font-family:sans-serif;margin:0;color:#222}
nav{background:#234;padding:.5em 1em}nav a{color:#fff;margin-right:1.2em;text-decoration:none}
nav a.here{font-weight:bold;text-decoration:underline}
main{padding:1em}table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#eee}
.bad{color:#b00;font-weight:bold}.ok{color:#070}.warn{color:#a60;font-weight:bold}
code{word-break:break-all}.qr svg{width:14em;height:14em}
</style></head><body>
<nav>{% for path, label, _ in pages %}<a href="{{ path }}"{% if path == here %} class="here"{% endif %}>{{ label }}</a>{% endfor %}</nav>
<main><h1>{{ title }}</h1>
{% block body %}{% endblock %}
</main></body></html>
"""

_BASES = """{% extends "layout.html" %}{% block body %}
{% if not bases %}<p>Нет баз в конфигурации / no bases configured.</p>{% else %}
<table id="bases"><tr><th>Имя / Name</th><th>ID</th><th>Адреса / URLs</th><th>HTTPS</th>
<th>Пользователи / user_auth</th><th>Только белый список / whitelist_only</th>
<th>Сертификат / Certificate</th><th>Сервер / Back end</th></tr>
{% for b in bases %}<tr>
<td class="name">{{ b.name }}</td><td>{{ b.id }}</td>
<td>{{ b.data_url }}{% if b.print_url %}<br>печать / print: {{ b.print_url }}{% endif %}</td>
<td>{{ "вкл / on" if b.https else "выкл / off" }}</td>
<td>{{ "да / yes" if b.user_auth else "нет / no" }}</td>
<td>{{ "да / yes" if b.whitelist_only else "нет / no" }}</td>
<td>{% if b.certificate %}{{ b.certificate.subject }} ({{ b.certificate.kind }})<br>
до / until {{ b.certificate.not_after.strftime("%Y-%m-%d") }},
<span class="{{ 'bad' if b.certificate.days_left < 0 else ('warn' if b.certificate.days_left < 30 else 'ok') }} days-left">{{ b.certificate.days_left }} дн. / days left</span>
{% elif b.certificate_problem %}<span class="bad">{{ b.certificate_problem }}</span>
{% else %}—{% endif %}</td>
<td>{% if b.backend_problems %}{% for p in b.backend_problems %}<span class="bad">{{ p }}</span><br>{% endfor %}
{% else %}<span class="ok">доступен / reachable</span>{% endif %}</td>
</tr>{% endfor %}</table>{% endif %}
{% endblock %}"""

_USERS = """{% extends "layout.html" %}{% block body %}
<h2>Группы / Groups</h2>
{% if not groups %}<p>Нет групп / no groups.</p>{% else %}
<table id="groups"><tr><th>ID</th><th>Имя / Name</th><th>Роль / Role</th><th>Типы документов / Doc types</th></tr>
{% for g in groups %}<tr><td>{{ g.id }}</td><td>{{ g.name }}</td><td>{{ g.role }}</td><td>{{ g.doc_types | join(", ") }}</td></tr>
{% endfor %}</table>{% endif %}
<h2>Пользователи / Users</h2>
{% if not users %}<p>Нет пользователей / no users.</p>{% else %}
<table id="users"><tr><th>Имя / Name</th><th>Группа / Group</th><th>Роль / Role</th><th>Штрихкод / Barcode</th></tr>
{% for u in users %}<tr><td>{{ u.name }}</td><td>{{ u.group }}</td><td>{{ u.role }}</td>
<td>{{ "есть / yes" if u.has_barcode else "нет / no" }}</td></tr>
{% endfor %}</table>{% endif %}
{% endblock %}"""

_IPLISTS = """{% extends "layout.html" %}{% block body %}
<h2>Файлы списков / List files</h2>
{% if not lists.sizes %}<p>Списков нет / no lists in force.</p>{% else %}
<table id="lists"><tr><th>Файл / File</th><th>Записей / Entries</th></tr>
{% for path, count in lists.sizes %}<tr><td><code>{{ path }}</code></td><td>{{ count }}</td></tr>{% endfor %}
</table>{% endif %}
<h2>Блокировки / Current bans</h2>
{% if not lists.bans %}<p>Нет блокировок / nothing is refused right now.</p>{% else %}
<table id="bans"><tr><th>Что / Kind</th><th>Кто / Who</th><th>Неудачных входов / Failures</th><th>Ещё, с / Seconds left</th></tr>
{% for ban in lists.bans %}<tr><td>{{ ban.kind }}</td><td>{{ ban.target }}</td><td>{{ ban.failures }}</td><td>{{ ban.retry_after }}</td></tr>{% endfor %}
</table><p>Снять: <code>gateway bans lift АДРЕС|ПОЛЬЗОВАТЕЛЬ</code> / lift one with that command.</p>{% endif %}
{% endblock %}"""

_EVENTS = """{% extends "layout.html" %}{% block body %}
{% if not events %}<p>Событий пока нет / no security events since the gateway started.</p>{% else %}
<table id="events"><tr><th>Время (UTC) / Time</th><th>Событие / Event</th><th>База / Base</th><th>Клиент / Client</th><th>Сообщение / Message</th></tr>
{% for e in events %}<tr class="{{ e.event }}"><td>{{ e.at.strftime("%Y-%m-%d %H:%M:%S") }}</td><td>{{ e.event }}</td><td>{{ e.base }}</td>
<td>{{ e.client }}</td><td>{{ e.message }}</td></tr>{% endfor %}</table>{% endif %}
<p>Последние {{ limit }} событий этого процесса / the last {{ limit }} events of this process.</p>
{% endblock %}"""

_ENROLMENT = """{% extends "layout.html" %}{% block body %}
{% if enrolment.ca_fingerprint %}<p>Локальный ЦС / local CA: {{ enrolment.ca_subject }}
{% if enrolment.ca_not_after %}, до / until {{ enrolment.ca_not_after.strftime("%Y-%m-%d") }}{% endif %}</p>
<p>SHA-256: <code id="fingerprint">{{ enrolment.ca_fingerprint }}</code></p>
{% else %}<p>Локального ЦС нет (настроен свой сертификат) / no local CA: a certificate of your own is configured.</p>{% endif %}
{% if enrolment.enabled %}<p>Страница подключения / enrolment page: <code>{{ enrolment.url }}</code></p>
{% if enrolment.qr_svg %}<div class="qr">{{ qr }}</div>{% endif %}
{% else %}<p>Страница подключения выключена / enrolment is off (<code>enrolment: {enabled: true}</code> turns it on).</p>{% endif %}
{% endblock %}"""

_ERROR = """{% extends "layout.html" %}{% block body %}<p>{{ text }}</p>{% endblock %}"""

_env = Environment(
    loader=DictLoader({
        "layout.html": _LAYOUT, "bases.html": _BASES, "users.html": _USERS, "iplists.html": _IPLISTS,
        "events.html": _EVENTS, "enrolment.html": _ENROLMENT, "error.html": _ERROR,
    }),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a missing value is a bug to see in tests, not an empty cell
)


def render_page(path: str, **facts: Any) -> str:
    """The page at ``path`` (one of PAGES) with its facts: bases, groups/users, lists, events, enrolment."""
    title = next(title for page, _, title in PAGES if page == path)
    extra: dict[str, Any] = {}
    if path == "/console/enrolment":
        extra["qr"] = Markup(facts["enrolment"].qr_svg)
    if path == "/console/events":
        extra.setdefault("limit", facts.pop("limit", 200))
    return _env.get_template(TEMPLATE_OF[path]).render(pages=PAGES, here=path, title=title, **facts, **extra)


def render_error(title: str, text: str) -> str:
    return _env.get_template("error.html").render(pages=PAGES, here="", title=title, text=text)
