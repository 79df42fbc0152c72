"""The admin console under ``/console`` on the admin listener (not a mitmproxy addon: ``Admin``
owns it and routes to it).

Log in through a form as a user whose group has the ``admin`` role (gateway/console/admin_login.py:
the same failed-login limits as the bases); a session cookie (HttpOnly, SameSite=Strict, Secure
over TLS) with an idle timeout follows. Pages are GET; every change is a POST carrying the
session's CSRF token, from a page of this origin (Origin / Referer / Sec-Fetch-Site checked),
and calls the same core function as the CLI (gateway/console/actions.py). Each change is an
audit event (``console-change``): who, what, from where, before/after in words, never a secret.

Everything the pages show is read afresh from the store, the files and the shared event
journal, so it does not matter which gateway process serves the console. Any error answers
500 with no data: the console fails closed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import email.parser
import email.policy
import logging
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives import serialization

from gateway.auth.authenticate import Authenticator, authenticator_for
from gateway.accounts.service import Accounts
from gateway.certs.enrolment import qr_svg
from gateway.certs.inspect import describe, fingerprint, load_local_ca
from gateway.certs.report import configured_certificates
from gateway.certs.sources import load_source, local_ca_file, source_for
from gateway.config import BaseConfig, GatewayConfig
from gateway.console.actions import ACTIONS, ActionRefused, Context, Form, find_list, list_files, run_action
from gateway.console import bases as base_form
from gateway.console.dashboard import dashboard
from gateway.auth import secondfactor, totp
from gateway.console.i18n import choose_language, translator
from gateway.utils.messages import localize, localize_lines
from gateway.utils.net import is_loopback
from gateway.ops.journal import EventFilter, filter_page, read_journal
from gateway.auth.login_driver import Logins
from gateway.console.admin_login import ADMIN_ROLE, console_login
from gateway.console.pages import (
    PAGES, STYLE, BaseView, BanView, CertificateFacts, CertificatesView, CertificateView, CheckView,
    ConfirmView, DeviceView, EnrolmentView, IssuedView, LinkView, Flash, GroupView, TwoFactorView, IpListsView, ListEditView,
    ListFileView, ListLine, UserView, render_error,
    render_page,
)
from gateway.console.admin_sessions import COOKIE, ConsoleSession, ConsoleSessions, csrf_ok
from gateway.ops.check import check
from gateway.ops.logsetup import CONSOLE_EVENTS
from gateway.ops.health import public_host, tcp_problem
from gateway.utils.net import split_authority
from gateway.iplist.edit import check_text, read_list_file
from gateway.iplist.files import ListUnreadable
from gateway.iplist.lists import load_list
from gateway.store import Store, StoreUnavailable
from gateway.store.handle import StoreHandle
from gateway.store.devices import last_seen, read_registry
from gateway.auth.throttle import Throttle

logger = logging.getLogger("gateway.console")

HTML = "text/html; charset=utf-8"
CSS = "text/css; charset=utf-8"
LANG_COOKIE = "gw_console_lang"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
# The page waits for this, so it is shorter than /readyz's second: "not there" on a LAN.
PROBE_TIMEOUT = 0.5
# A certificate with its chain, or a big list pasted into the form; nothing larger is sent here.
MAX_BODY = 4 * 1024 * 1024
EVENTS_PER_PAGE = 50
# argon2 and store reads; two threads keep a burst of wrong passwords from piling up threads.
THREADS = 2
# The confirmation step: these POSTs (or any with remove=on) show a "are you sure" page first.
REMOVALS = frozenset({"/console/groups/remove", "/console/users/remove", "/console/2fa/remove"})
# Form fields never carried back into a refused form, nor onto a confirmation page's question.
SECRET_FIELDS = frozenset({"password", "password2", "barcode", "barcode2", "csrf", "code"})
# The issuer shown by authenticator apps next to the account.
TOTP_ISSUER = "TLS gateway"
# After a change, the page to show it on.
SUBPAGES = ("/console/iplists/edit", "/console/bases/edit", "/console/bases/remove")
PAGE_AFTER = {"groups": "/console/users", "users": "/console/users", "bans": "/console/iplists",
              "iplists": "/console/iplists", "certificates": "/console/certificates",
              "devices": "/console/devices"}


@dataclass(frozen=True)
class Page:
    status: int
    body: str | bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = HTML

    @property
    def data(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


@dataclass
class _State:
    cfg: GatewayConfig
    store: Store
    authenticator: Authenticator
    throttle: Throttle
    accounts: Accounts
    logins: Logins
    second_factor_required: bool  # the admin listener is reachable off loopback


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    address: str
    body: bytes
    tls: bool
    lang: str
    cookies: dict[str, str]
    set_cookies: list[str]


def is_console_path(path: str) -> bool:
    return path == "/console" or path.startswith("/console/")


class Console:
    def __init__(self, stores: StoreHandle | None = None) -> None:
        """``stores``: the process's store (gateway.store.handle); its own when none is given."""
        self._own_stores = stores is None
        self._stores = stores or StoreHandle()
        self._state: _State | None = None
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="gateway-console")
        # argon2 apart from the store calls, as on the bases: a slow check never holds up a page.
        self._verify_pool = ThreadPoolExecutor(1, thread_name_prefix="gateway-console-verify")
        self.sessions = ConsoleSessions()

    def apply_config(self, cfg: GatewayConfig) -> None:
        old = self._state
        store = self._stores.for_config(cfg)
        authenticator = authenticator_for(cfg, store, old.authenticator if old is not None else None)
        self.sessions.idle_timeout = cfg.admin.console_idle_timeout
        throttle = Throttle(store, cfg.throttle)
        self._state = _State(cfg, store, authenticator, throttle, Accounts(store, authenticator.secret),
                             Logins(store, authenticator, throttle, self._verify_pool, self._pool),
                             cfg.admin.enabled and not is_loopback(cfg.admin.host))
        if self._own_stores:
            self._stores.settle(cfg)

    def done(self) -> None:
        self._pool.shutdown(wait=False)
        self._verify_pool.shutdown(wait=False)
        if self._state is not None:
            self._state = None
        if self._own_stores:
            self._stores.close()

    async def answer(self, method: str, target: str, headers: dict[str, str], address: str, body: bytes = b"",
                     tls: bool = False) -> Page:
        path, _, query_text = target.partition("?")
        query = {k: v[0] for k, v in urllib.parse.parse_qs(query_text, keep_blank_values=True).items()}
        cookies = _cookies(headers.get("cookie", ""))
        lang = choose_language(headers.get("accept-language", ""), query.get("lang") or cookies.get(LANG_COOKIE, ""))
        request = _Request(method, path.rstrip("/") or "/", query, headers, address, body, tls, lang, cookies, [])
        if query.get("lang") == lang:
            request.set_cookies.append(f"{LANG_COOKIE}={lang}; Path=/console; Max-Age=31536000; SameSite=Strict"
                                       + ("; Secure" if tls else ""))
        try:
            page = await self._answer(request)
        except StoreUnavailable:
            # The store's health has said so once in the log; every page needs the store.
            _ = translator(lang)
            page = _error(503, "503", "503: " + _("The user store is down; see /readyz and the gateway log."), lang)
        except Exception:
            logger.exception("console page %s failed", path)
            _ = translator(lang)
            page = _error(500, "500", "500: " + _("The console could not build this page; see the gateway log."),
                          lang)
        return Page(page.status, page.body, page.headers + tuple(("Set-Cookie", c) for c in request.set_cookies),
                    page.content_type)

    # --- routing -------------------------------------------------------------------------------

    async def _answer(self, request: _Request) -> Page:
        state = self._state
        if state is None:
            raise RuntimeError("the console has no configuration applied")
        path, method = request.path, request.method
        if path == "/console/static/console.css":
            return Page(200, STYLE, content_type=CSS)
        if path == "/console/login":
            if method == "POST":
                return await self._login(state, request)
            if method in ("GET", "HEAD"):
                return Page(200, render_page(path, lang=request.lang))
            return _not_allowed(request.lang)
        token = request.cookies.get(COOKIE, "")
        session = await self._off_loop(self._live_session, state, token)
        _ = translator(request.lang)
        if method == "POST":
            refusal = _cross_site(request, state.cfg.admin.served_hosts())
            if refusal is not None:
                return refusal
            form = _parse_form(request)
            if session is None:
                return _error(403, "403", "403: " + _("Your session has ended; log in again."), request.lang)
            submitted = form.get("csrf") or request.headers.get("x-csrf-token", "")
            if not csrf_ok(session, submitted):
                logger.warning("console refused a change from %s: CSRF token missing or wrong (%s)",
                               request.address, path, extra={"event": "console-refused", "client": request.address,
                                                             "admin": session.user_name})
                return _error(403, "403", "403: " + _("The form has expired or came from another page (CSRF "
                                                      "check failed); reload the page and try again."),
                              request.lang, session)
            if session.must_enrol and path not in ("/console/logout", "/console/2fa/confirm"):
                return _redirect("/console/2fa")
            if path in ("/console/2fa/confirm", "/console/2fa/remove"):
                return await self._second_factor_change(state, request, session, form)
            if path == "/console/logout":
                self.sessions.end(token)
                logger.info("console logout of %r from %s", session.user_name, request.address,
                            extra={"event": "console-logout", "client": request.address, "admin": session.user_name})
                request.set_cookies.append(_session_cookie("", request.tls, expire=True))
                return _redirect("/console/login")
            if path in ("/console/bases/save", "/console/bases/remove"):
                return await self._base_change(state, request, session, form)
            if path in ACTIONS:
                return await self._change(state, request, session, form)
            return _error(404, "404", "404: " + _("No such console page."), request.lang, session)
        if method not in ("GET", "HEAD"):
            return _not_allowed(request.lang)
        if session is None:
            return _redirect("/console/login")
        if session.must_enrol and path != "/console/2fa":
            return _redirect("/console/2fa")
        if path in ACTIONS or path == "/console/logout":
            return _error(405, "405", "405: " + _("Changes are made with the buttons of a page (POST); this "
                                                  "address only shows."), request.lang, session,
                          (("Allow", "POST"),))
        if path in ("/console/ca.pem", "/console/ca.der"):
            return await self._off_loop(_ca_download, state.cfg, path.rsplit(".", 1)[1], request.lang, session)
        if path not in {page for page, _label in PAGES} and path not in SUBPAGES:
            return _error(404, "404", "404: " + _("No such console page."), request.lang, session)
        flash, session.flash = session.flash, None
        return Page(200, await self._render(state, request, session, flash))

    def _live_session(self, state: _State, token: str) -> ConsoleSession | None:
        """The session, while its user still exists, is still an admin and kept its password."""
        session = self.sessions.get(token)
        if session is None:
            return None
        principal = state.store.principal(session.user_id)
        if principal is None or principal.user.generation != session.generation \
                or principal.group.role != ADMIN_ROLE:
            self.sessions.end(token)
            return None
        return session

    # --- login ---------------------------------------------------------------------------------

    async def _login(self, state: _State, request: _Request) -> Page:
        refusal = _cross_site(request, state.cfg.admin.served_hosts())
        if refusal is not None:
            return refusal
        form = _parse_form(request)
        login = (form.get("username") or form.get("user") or form.get("login")).strip()
        result = await console_login(state.logins, request.address, login, form.get("password"),
                                     form.get("code").strip(), state.second_factor_required,
                                     allowed_address=state.cfg.admin.allowed(request.address))
        _ = translator(request.lang)
        kept = {"username": login}
        if result.throttled:
            text = f"429: {_('Too many failed logins; try again in')} {result.retry_after} {_('s')}."
            return Page(429, render_page("/console/login", lang=request.lang, flash=Flash(False, text), kept=kept),
                        (("Retry-After", result.retry_after),))
        if result.principal is None:
            return Page(401, render_page("/console/login", lang=request.lang, kept=kept,
                                         flash=Flash(False, _("Wrong user name or password."))))
        if result.not_admin:
            return Page(403, render_page("/console/login", lang=request.lang, flash=Flash(
                False, "403: " + _("The console is for users of a group with the admin role.")), kept=kept))
        if result.wrong_code:
            return Page(401, render_page("/console/login", lang=request.lang, kept=kept, flash=Flash(
                False, _("Wrong or missing one-time code: type the code your authenticator app shows now, or "
                         "an unused recovery code."))))
        user = result.principal.user
        token, session = self.sessions.create(user.id, user.name, user.generation)
        second = f" with {'a recovery code' if result.second_factor == 'recovery' else 'a one-time code'}" \
            if result.second_factor else ""
        logger.info("console login of %r from %s%s", user.name, request.address, second,
                    extra={"event": "console-login", "client": request.address, "admin": user.name})
        request.set_cookies.append(_session_cookie(token, request.tls))
        if result.must_enrol:
            session.must_enrol = True
            return _redirect("/console/2fa")
        return _redirect("/console")

    # --- the second factor -----------------------------------------------------------------------

    async def _second_factor_change(self, state: _State, request: _Request, session: ConsoleSession,
                                    form: Form) -> Page:
        _ = translator(request.lang)
        if request.path == "/console/2fa/remove":
            if state.second_factor_required:
                session.flash = Flash(False, _("Two-step login is required here (the admin listener is reachable "
                                               "from other machines); it cannot be turned off."))
                return _redirect("/console/2fa")
            if form.get("confirm") != "yes":
                return Page(200, self._confirm_page(state, request, session, form))
            await self._off_loop(secondfactor.remove, state.store, session.user_id)
            logger.warning("console: admin %r from %s turned off their two-step login", session.user_name,
                           request.address, extra={"event": "console-change", "admin": session.user_name,
                                                   "client": request.address})
            session.flash = Flash(True, _("Two-step login turned off."))
            return _redirect("/console/2fa")
        secret = session.pending_secret
        codes = await self._off_loop(secondfactor.enrol, state.store, session.user_id, secret,
                                     form.get("code").strip()) if secret else None
        if codes is None:
            # A wrong first code counts like a wrong password: this session proved the password, not the phone.
            await self._off_loop(state.throttle.record_failure, request.address, session.user_name)
            session.flash = Flash(False, _("The code does not match; check the phone's clock and type the code "
                                           "shown now."))
            return _redirect("/console/2fa")
        session.pending_secret = ""
        session.must_enrol = False
        logger.info("console: admin %r from %s enrolled a two-step login (TOTP, %d recovery codes)",
                    session.user_name, request.address, len(codes),
                    extra={"event": "console-change", "admin": session.user_name, "client": request.address})
        view = TwoFactorView(enrolled=True, required=state.second_factor_required, recovery_left=len(codes),
                             recovery_codes=tuple(codes))
        return Page(200, render_page("/console/2fa", lang=request.lang, who=session.user_name, csrf=session.csrf,
                                     flash=Flash(True, _("Two-step login is on.")), twofactor=view))

    def _two_factor_view(self, state: _State, session: ConsoleSession) -> TwoFactorView:
        factor = secondfactor.load(state.store, session.user_id)
        if factor is not None:
            return TwoFactorView(True, state.second_factor_required, len(factor.recovery))
        if not session.pending_secret:
            session.pending_secret = totp.new_secret()
        uri = totp.provisioning_uri(session.pending_secret, session.user_name, TOTP_ISSUER)
        return TwoFactorView(False, state.second_factor_required, secret=session.pending_secret, qr_svg=qr_svg(uri))

    def _confirm_page(self, state: _State, request: _Request, session: ConsoleSession, form: Form) -> str:
        lang = request.lang
        _ = translator(lang)
        fields = tuple((k, v) for k, v in form.fields.items() if k not in SECRET_FIELDS and k != "confirm")
        question = _confirm_question(state, request.path, form, lang)
        back = PAGE_AFTER.get(request.path.split("/")[2], "/console/2fa")
        return render_page("/console/confirm", lang=lang, who=session.user_name, csrf=session.csrf,
                           confirm=ConfirmView(question, request.path, fields, back))

    # --- changes -------------------------------------------------------------------------------

    async def _change(self, state: _State, request: _Request, session: ConsoleSession, form: Form) -> Page:
        context = Context(state.cfg, state.accounts, state.throttle)
        after = PAGE_AFTER[request.path.split("/")[2]]
        if request.path == "/console/iplists/save" and form.get("list"):
            after = "/console/iplists/edit?list=" + urllib.parse.quote(form.get("list"))  # back to that list
        if (request.path in REMOVALS or request.path.endswith("/remove") or form.get("remove") == "on") \
                and form.get("confirm") != "yes":
            return Page(200, await self._off_loop(self._confirm_page, state, request, session, form))
        try:
            done = await self._off_loop(run_action, request.path, context, form)
        except ActionRefused as e:
            logger.info("console: %r from %s: refused %s: %s", session.user_name, request.address, request.path, e,
                        extra={"admin": session.user_name, "client": request.address})
            session.flash = Flash(False, localize_lines(request.lang, str(e)))
            # What was typed comes back into the form (never a secret), under the action's name.
            session.kept = {"form": request.path, **{k: v for k, v in form.fields.items()
                                                     if k not in SECRET_FIELDS}}
            return _redirect(after)
        if done.unsaved_text is not None:
            page = await self._off_loop(self._list_edit_page, state, request, session, form.get("list"),
                                        done.unsaved_text, done.unsaved_errors)
            return Page(200, page)
        logger.info("console: admin %r from %s %s", session.user_name, request.address, done.audit,
                    extra={"event": "console-change", "admin": session.user_name, "client": request.address,
                           **({"base": done.base} if done.base else {})})
        if done.link is not None:
            common = {"lang": request.lang, "who": session.user_name, "csrf": session.csrf,
                      "flash": Flash(True, localize_lines(request.lang, done.message)), "keep": ""}
            devices = await self._off_loop(_devices, state.store)
            return Page(200, render_page("/console/devices", devices=devices, users=await self._off_loop(
                _user_names, state.store), issued=None, link=_link_view(done.link), **common))
        if done.issued is not None:
            # The file and its password exist only in this answer: no redirect could carry them.
            common = {"lang": request.lang, "who": session.user_name, "csrf": session.csrf,
                      "flash": Flash(True, localize_lines(request.lang, done.message)), "keep": ""}
            devices = await self._off_loop(_devices, state.store)
            return Page(200, render_page("/console/devices", devices=devices, users=await self._off_loop(
                _user_names, state.store), issued=_issued_view(done.issued), link=None, **common))
        session.flash = Flash(True, localize_lines(request.lang, done.message), done.block)
        if done.message.startswith("user ") and form.get("group"):
            session.last_group = form.get("group")  # "Add a user" offers it next time, unless it is the admin role
        return _redirect(after)

    async def _base_change(self, state: _State, request: _Request, session: ConsoleSession, form: Form) -> Page:
        """Save or remove a base: on a refusal the form comes back with what was typed and why."""
        _ = translator(request.lang)
        removing = request.path == "/console/bases/remove"
        original = form.get("base" if removing else "original").strip() or None
        try:
            if removing:
                done = await self._off_loop(base_form.remove, state.cfg, original or "")
            else:
                done = await self._off_loop(base_form.save, state.cfg, original, form)
        except ActionRefused as e:
            logger.info("console: %r from %s: refused %s: %s", session.user_name, request.address, request.path, e,
                        extra={"admin": session.user_name, "client": request.address})
            flash = Flash(False, f"{_('Refused')}: {e}")
            if removing:
                session.flash = flash
                return _redirect("/console/bases")
            page = render_page("/console/bases/edit", lang=request.lang, who=session.user_name, csrf=session.csrf,
                               flash=flash, keep="", original=original or "", values=base_form.kept(form))
            return Page(400, page)
        logger.info("console: admin %r from %s %s; reload: %s", session.user_name, request.address, done.audit,
                    done.reload.text, extra={"event": "console-change", "admin": session.user_name,
                                             "client": request.address, "base": done.base})
        session.flash = Flash(done.reload.applied, f"{_(done.message).format(id=done.base)} {_('Reload')}: {_(done.reload.text)}")
        return _redirect("/console/bases")

    # --- pages ---------------------------------------------------------------------------------

    async def _render(self, state: _State, request: _Request, session: ConsoleSession, flash: Any) -> str:
        cfg, path = state.cfg, request.path
        kept, session.kept = session.kept, {}
        common: dict[str, Any] = {"lang": request.lang, "who": session.user_name, "csrf": session.csrf,
                                  "flash": flash, "keep": _keep(request), "kept": kept}
        if path == "/console":
            dash = await self._off_loop(dashboard, cfg, translator(request.lang))
            return render_page(path, dash=dash, **common)
        if path in ("/console/bases/edit", "/console/bases/remove"):
            base_id = request.query.get("base", "")
            base = cfg.base_by_id(base_id) if base_id else None
            if base_id and base is None:
                _ = translator(request.lang)
                return render_error("404", "404: " + _("No such base."), lang=request.lang, who=session.user_name,
                                    csrf=session.csrf)
            if path == "/console/bases/remove":
                if base is None:
                    return render_error("404", "404", lang=request.lang, who=session.user_name, csrf=session.csrf)
                return render_page(path, base=base, **common)
            values = base_form.form_of(base) if base is not None else {"https": "on", "cert_choice": "default"}
            return render_page(path, original=base_id, values=values, **common)
        if path == "/console/bases":
            views, checks = await asyncio.gather(
                asyncio.gather(*(self._base_view(cfg, base) for base in cfg.bases)),
                self._off_loop(_checks, cfg))
            return render_page(path, bases=list(views), checks=checks, **common)
        if path == "/console/users":
            groups, users = await self._off_loop(_accounts, state.store)
            # "Add a user" preselects nothing, or the group last used when it is not an admin group.
            last = session.last_group if any(g.id == session.last_group and g.role != ADMIN_ROLE
                                             for g in groups) else ""
            return render_page(path, groups=groups, users=users, last_group=last, **common)
        if path == "/console/iplists":
            return render_page(path, lists=await self._off_loop(_lists, cfg, state.throttle), **common)
        if path == "/console/iplists/edit":
            return await self._off_loop(self._list_edit_page, state, request, session, request.query.get("list", ""),
                                        None, (), flash)
        if path == "/console/certificates":
            return render_page(path, certs=await self._off_loop(_certificates, cfg), **common)
        if path == "/console/events":
            wanted = EventFilter(*(request.query.get(k, "").strip() for k in ("kind", "base", "address", "user")))
            page = int(request.query.get("page", "1")) if request.query.get("page", "1").isdigit() else 1
            found = await self._off_loop(lambda: filter_page(read_journal(cfg.state_dir), wanted, page,
                                                             EVENTS_PER_PAGE))
            query = urllib.parse.urlencode({k: v for k, v in vars(wanted).items() if v})
            return render_page(path, found=found, wanted=wanted, kinds=sorted(CONSOLE_EVENTS), query=query,
                               **common)
        if path == "/console/devices":
            return render_page(path, devices=await self._off_loop(_devices, state.store),
                               users=await self._off_loop(_user_names, state.store), issued=None, link=None, **common)
        if path == "/console/2fa":
            return render_page(path, twofactor=await self._off_loop(self._two_factor_view, state, session), **common)
        return render_page(path, enrolment=await self._off_loop(_enrolment, cfg), **common)

    def _list_edit_page(self, state: _State, request: _Request, session: ConsoleSession, key: str,
                        unsaved_text: str | None, unsaved_errors: tuple[str, ...], flash: Flash | None = None) -> str:
        common: dict[str, Any] = {"lang": request.lang, "who": session.user_name, "csrf": session.csrf,
                                  "flash": flash}
        try:
            ref = find_list(state.cfg, key)
            current = read_list_file(ref.path)
        except (ActionRefused, ListUnreadable) as e:
            return render_error("IP lists", str(e), lang=request.lang, who=session.user_name, csrf=session.csrf)
        errors = {e.line: e.reason for e in check_text(current.text)}
        lines = current.lines() if current.present else []
        if lines and lines[-1] == "":
            lines = lines[:-1]  # the final line end does not start another line
        view = ListEditView(
            key=ref.key, path=str(ref.path), kind=ref.kind, base=ref.base, present=current.present,
            encoding=current.encoding, newline={"\r\n": "CRLF", "\n": "LF", "\r": "CR"}[current.newline],
            lines=tuple(ListLine(n, text, errors.get(n, "")) for n, text in enumerate(lines, 1)),
            text=unsaved_text if unsaved_text is not None else current.text, unsaved_errors=unsaved_errors)
        return render_page("/console/iplists/edit", edit=view, keep=urllib.parse.urlencode({"list": ref.key}) + "&",
                           **common)

    async def _base_view(self, cfg: GatewayConfig, base: BaseConfig) -> BaseView:
        host = public_host(cfg)
        endpoints = list(base.endpoints())
        problems = await asyncio.gather(*(self._off_loop(tcp_problem, e.backend_host, e.backend_port, PROBE_TIMEOUT)
                                          for _, e in endpoints))
        certificate, cert_problem = (await self._off_loop(_certificate, cfg, base)) if base.https else (None, "")
        scheme = "https" if base.https else "http"
        print_url = f"{scheme}://{host}:{base.print.listen}" if base.print and base.print.enabled else ""
        return BaseView(
            id=base.id, name=base.name, data_url=f"{scheme}://{host}:{base.data.listen}", print_url=print_url,
            https=base.https, user_auth=base.user_auth, whitelist_only=base.whitelist_only,
            backend_problems=tuple(f"{role} {e.backend}: {p}" for (role, e), p in zip(endpoints, problems) if p),
            certificate=certificate, certificate_problem=cert_problem,
        )

    async def _off_loop(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)


# --- HTTP details ------------------------------------------------------------------------------


def _cookies(header: str) -> dict[str, str]:
    """Name → value. Cookies are per host, not per port: other programs on 127.0.0.1 may have
    set cookies SimpleCookie refuses, and they must not hide ours."""
    found: dict[str, str] = {}
    for item in header.split(";"):
        name, sep, value = item.strip().partition("=")
        if sep and name not in found:
            found[name] = value.strip().strip('"')
    return found


def _session_cookie(token: str, tls: bool, expire: bool = False) -> str:
    cookie = f"{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict"
    if tls:
        cookie += "; Secure"
    if expire:
        cookie += "; Max-Age=0"
    return cookie


def _origin_of(request: _Request) -> str:
    host = request.headers.get("host", "")
    return f"{'https' if request.tls else 'http'}://{host}"


def _own_origin(url: str, request: _Request, hosts: frozenset[str]) -> bool:
    """Whether an Origin or Referer names this console: its scheme, a name of ``admin.hosts``
    (never merely the Host header, which a DNS-rebinding page chooses) and, when given, the port."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != ("https" if request.tls else "http"):
        return False
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if "@" in authority:
        return False
    host, port = split_authority(authority)
    own_port = split_authority(request.headers.get("host", ""))[1]
    return host in hosts and (port is None or own_port is None or port == own_port)


def _cross_site(request: _Request, hosts: frozenset[str]) -> Page | None:
    """A refusal when the POST did not come from one of the console's own pages.

    The pages send ``Referrer-Policy: no-referrer``, under which a browser's form POST carries
    ``Origin: null`` and no Referer; ``Sec-Fetch-Site`` then tells a same-origin form from
    another site's. A present Origin or Referer must be this console, by ``admin.hosts``.
    """
    own = _origin_of(request)
    origin = request.headers.get("origin", "")
    referer = request.headers.get("referer", "")
    fetch_site = request.headers.get("sec-fetch-site", "")
    bad = ""
    if origin and origin != "null" and not _own_origin(origin, request, hosts):
        bad = f"Origin {origin}"
    elif referer and not _own_origin(referer, request, hosts):
        bad = f"Referer {referer.split('?')[0]}"
    elif fetch_site and fetch_site not in ("same-origin", "none"):
        bad = f"Sec-Fetch-Site {fetch_site}"
    elif origin == "null" and fetch_site != "same-origin":
        bad = "Origin null"
    if not bad:
        return None
    logger.warning("console refused a POST to %s from %s: %s is not this console (%s)", request.path,
                   request.address, bad, own, extra={"event": "console-refused", "client": request.address})
    _ = translator(request.lang)
    return _error(403, "403", "403: " + _("The request came from another site (Origin/Referer check failed)."),
                  request.lang)


def _parse_form(request: _Request) -> Form:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return _multipart(content_type, request.body)
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return Form()
    return Form({k: v[0] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()})


def _multipart(content_type: str, body: bytes) -> Form:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    form = Form()
    if not message.is_multipart():
        return form
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            if payload:
                form.files[name] = payload
                form.fields[f"{name}_name"] = filename
        else:
            form.fields[name] = payload.decode("utf-8", errors="replace")
    return form


def _keep(request: _Request) -> str:
    """The page's own query for the language switch's links, which add ``lang=``."""
    rest = {k: v for k, v in request.query.items() if k != "lang"}
    return urllib.parse.urlencode(rest) + "&" if rest else ""


def _redirect(location: str) -> Page:
    return Page(303, "", (("Location", location),))


def _error(status: int, title: str, text: str, lang: str, session: ConsoleSession | None = None,
           headers: tuple[tuple[str, str], ...] = ()) -> Page:
    who, csrf = (session.user_name, session.csrf) if session is not None else ("", "")
    return Page(status, render_error(title, text, lang=lang, who=who, csrf=csrf), headers)


def _not_allowed(lang: str) -> Page:
    return _error(405, "405", "405 Method Not Allowed", lang, headers=(("Allow", "GET, HEAD, POST"),))


# --- facts for the pages (in a thread) ---------------------------------------------------------


def _confirm_question(state: _State, path: str, form: Form, lang: str) -> str:
    """The question of a removal's confirmation page, naming what goes."""
    _ = translator(lang)
    store = state.store
    if path == "/console/users/remove" or (path == "/console/users/barcode" and form.get("remove") == "on"):
        user = store.find_user(form.get("user"))
        name = user.name if user is not None else form.get("user")
        if path == "/console/users/remove":
            return _("Remove the user {name}? Their sessions end at once; this cannot be undone.").format(name=name)
        return _("Remove the barcode of {name}? Terminals can no longer log in with it.").format(name=name)
    if path == "/console/groups/remove":
        group = store.find_group(form.get("group"))
        name = group.name if group is not None else form.get("group")
        return _("Remove the group {name}? This cannot be undone.").format(name=name)
    if path == "/console/2fa/remove":
        return _("Turn off your two-step login? The console then asks only for the password.")
    what = ", ".join(f"{k}: {v}" for k, v in form.fields.items() if k not in SECRET_FIELDS and k != "confirm")
    return _("Remove {what}?").format(what=what)


def _certificate(cfg: GatewayConfig, base: BaseConfig) -> tuple[CertificateFacts | None, str]:
    try:
        bundle = load_source(source_for(cfg, base))
        view = describe(list(bundle.chain), load_local_ca(cfg))
    except Exception as e:  # CertError names the file and the fix; anything else is shown as is
        return None, str(e)
    return CertificateFacts(view.subject, view.kind, view.not_after, view.days_left), ""


def _checks(cfg: GatewayConfig) -> list[CheckView]:
    # What `gateway check` prints, problem by problem.
    return [CheckView(s.name, s.address, tuple(s.problems)) for s in check(cfg, PROBE_TIMEOUT)]


def _accounts(store: Store) -> tuple[list[GroupView], list[UserView]]:
    groups = {g.id: g for g in store.list_groups()}
    users = []
    members: dict[str, int] = {}
    for user in store.list_users():
        group = groups.get(user.group_id)
        members[user.group_id] = members.get(user.group_id, 0) + 1
        users.append(UserView(user.id, user.name, group.name if group else user.group_id,
                              group.role if group else "?", user.has_barcode, user.group_id))
    return [GroupView(g.id, g.name, g.role, g.doc_types, members.get(g.id, 0), g.offline)
            for g in groups.values()], users


def _lists(cfg: GatewayConfig, throttle: Throttle) -> IpListsView:
    files = []
    for ref in list_files(cfg):
        try:
            compiled = load_list(ref.path)
        except ListUnreadable as e:
            files.append(ListFileView(ref.key, str(ref.path), ref.kind, ref.base, True, 0, 0, str(e.problem)))
            continue
        files.append(ListFileView(ref.key, str(ref.path), ref.kind, ref.base, compiled.present, compiled.entries,
                                  len(compiled.errors)))
    bans = tuple(BanView(b.kind, b.target, b.failures, int(b.retry_after + 0.999)) for b in throttle.bans())
    return IpListsView(tuple(files), bans)


def _devices(store: Store) -> list[DeviceView]:
    names = {u.id: u.name for u in store.list_users()}
    now = time.time()

    def day(ts: float) -> str:
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d") if ts else ""

    def seen(ts: float) -> str:
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M") if ts else ""

    return [DeviceView(d.name, names.get(d.user, d.user), d.serial, day(d.issued), day(d.expires),
                       int((d.expires - now) // 86400), day(d.revoked), seen(last_seen(store, d.name)))
            for d in sorted(read_registry(store).devices, key=lambda d: d.name)]


def _user_names(store: Store) -> list[str]:
    return sorted(u.name for u in store.list_users())


def _link_view(made: Any) -> LinkView:
    link, url = made
    until = datetime.datetime.fromtimestamp(link.expires).strftime("%H:%M")
    return LinkView(link.name, url, link.code, qr_svg(url), until)


def _issued_view(issued: Any) -> IssuedView:
    data = "data:application/x-pkcs12;base64," + base64.b64encode(issued.p12).decode("ascii")
    return IssuedView(issued.device.name, f"{issued.device.name}.p12", data, issued.password)


def _certificates(cfg: GatewayConfig) -> CertificatesView:
    served = tuple(CertificateView(c.base_id, c.label, str(c.path), c.text, c.problem)
                   for c in configured_certificates(cfg))
    ca = load_local_ca(cfg)
    return CertificatesView(served, tuple((b.id, b.name) for b in cfg.bases), fingerprint(ca) if ca else "")


def _ca_download(cfg: GatewayConfig, form: str, lang: str, session: ConsoleSession) -> Page:
    ca = load_local_ca(cfg)
    if ca is None:
        _ = translator(lang)
        return _error(404, "404", "404: " + _("No local CA: a certificate of your own is configured."), lang,
                      session)
    if form == "der":
        data, kind = ca.public_bytes(serialization.Encoding.DER), "application/pkix-cert"
    else:
        data, kind = local_ca_file(cfg).read_bytes(), "application/x-pem-file"
    return Page(200, data, (("Content-Disposition", f'attachment; filename="ca.{form}"'),), kind)


def _enrolment(cfg: GatewayConfig) -> EnrolmentView:
    ca = load_local_ca(cfg)
    facts: dict[str, Any] = {}
    if ca is not None:
        facts = {"ca_fingerprint": fingerprint(ca), "ca_subject": ca.subject.rfc4514_string(),
                 "ca_not_after": ca.not_valid_after_utc}
    if not cfg.enrolment.enabled:
        return EnrolmentView(False, **facts)
    host = cfg.enrolment.host
    if host in ("", "0.0.0.0", "::"):
        host = public_host(cfg)
    elif ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{cfg.enrolment.listen}/"
    return EnrolmentView(True, url, qr_svg=qr_svg(url) if ca is not None else "", **facts)
