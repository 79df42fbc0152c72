"""The read-only admin console under ``/console`` on the admin listener (not a mitmproxy addon:
``Admin`` owns it and routes to it).

Every page needs ``Authorization: Basic`` of a user whose group has the ``admin`` role, checked
like a login on a base: the address's failed-login limit first (429), then the credentials
(the Authenticator's success cache, else argon2 in a thread), a failure counted by the Throttle.
Only GET and HEAD are answered, so there is nothing to forge (no CSRF surface). Any error
answers 500 with no data: the console fails closed.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from gateway.accounts.authenticate import Authenticator, reuse_or_open
from gateway.certs.enrolment import qr_svg
from gateway.certs.inspect import describe, fingerprint, load_local_ca
from gateway.certs.sources import load_source, source_for
from gateway.config import BaseConfig, GatewayConfig
from gateway.console import (
    PAGES, BaseView, CertificateFacts, EnrolmentView, EventRing, GroupView, IpListsView, UserView, render_error,
    render_page,
)
from gateway.console.pages import BanView
from gateway.credentials import CredentialError, is_basic, parse_authorization
from gateway.health import public_host, tcp_problem
from gateway.store import Principal, Store
from gateway.throttle import Throttle

logger = logging.getLogger("gateway.console")

HTML = "text/html; charset=utf-8"
REALM = 'Basic realm="gateway console", charset="UTF-8"'
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
# The page waits for this, so it is shorter than /readyz's second: "not there" on a LAN.
PROBE_TIMEOUT = 0.5
ADMIN_ROLE = "admin"
# argon2 and store reads; two threads keep a burst of wrong passwords from piling up threads.
THREADS = 2


@dataclass(frozen=True)
class Page:
    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class _State:
    cfg: GatewayConfig
    store: Store
    store_key: tuple[Any, ...]
    authenticator: Authenticator
    throttle: Throttle


def is_console_path(path: str) -> bool:
    return path == "/console" or path.startswith("/console/")


class Console:
    def __init__(self, list_sizes: Callable[[], dict[str, int]] | None = None) -> None:
        self._state: _State | None = None
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="gateway-console")
        self._list_sizes = list_sizes or _ipfilter_sizes
        self.events = EventRing()
        logging.getLogger("gateway").addHandler(self.events)

    def apply_config(self, cfg: GatewayConfig) -> None:
        old = self._state
        store_key, store, authenticator = reuse_or_open(
            cfg, (old.store_key, old.store, old.authenticator) if old is not None else None)
        self._state = _State(cfg, store, store_key, authenticator, Throttle(store, cfg.throttle))
        if old is not None and old.store is not store:
            old.store.close()

    def done(self) -> None:
        logging.getLogger("gateway").removeHandler(self.events)
        self._pool.shutdown(wait=False)
        if self._state is not None:
            self._state.store.close()
            self._state = None

    async def answer(self, method: str, path: str, headers: dict[str, str], address: str) -> Page:
        try:
            return await self._answer(method, path.rstrip("/") or "/", headers, address)
        except Exception:
            logger.exception("console page %s failed", path)
            return _error(500, "Ошибка / Internal error", "500: the console could not build this page; "
                                                         "see the gateway log.")

    async def _answer(self, method: str, path: str, headers: dict[str, str], address: str) -> Page:
        if method not in ("GET", "HEAD"):
            return _error(405, "405", "405 Method Not Allowed: the console is read-only; use GET.",
                          (("Allow", "GET, HEAD"),))
        state = self._state
        if state is None:
            raise RuntimeError("the console has no configuration applied")
        refusal = await self._off_loop(_check_admin, state, headers.get("authorization", ""), address)
        if refusal is not None:
            return refusal
        if path not in {page for page, _, _ in PAGES}:
            return _error(404, "404", "404 Not Found: no such console page.")
        return Page(200, await self._render(state, path))

    async def _render(self, state: _State, path: str) -> str:
        cfg = state.cfg
        if path == "/console":
            views = await asyncio.gather(*(self._base_view(cfg, base) for base in cfg.bases))
            return render_page(path, bases=list(views))
        if path == "/console/users":
            groups, users = await self._off_loop(_accounts, state.store)
            return render_page(path, groups=groups, users=users)
        if path == "/console/iplists":
            lists = await self._off_loop(_lists, state.throttle, self._list_sizes)
            return render_page(path, lists=lists)
        if path == "/console/events":
            return render_page(path, events=self.events.recent())
        return render_page(path, enrolment=await self._off_loop(_enrolment, cfg))

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


def _error(status: int, title: str, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Page:
    return Page(status, render_error(title, text), headers)


def _check_admin(state: _State, authorization: str, address: str) -> Page | None:
    """None when the request comes from an admin; else the refusal. Runs in a thread (argon2)."""
    verdict = state.throttle.check_ip(address)
    if verdict.blocked:
        return _error(429, "429", f"429 Too Many Requests: too many failed logins; try again in "
                                  f"{verdict.retry_after_header} s.", (("Retry-After", verdict.retry_after_header),))
    if not authorization or not is_basic(authorization):
        return _unauthorized()
    try:
        creds = parse_authorization(authorization)
    except CredentialError as e:
        return _failed(state, address, None, str(e))
    if creds.login:
        verdict = state.throttle.check_account(creds.login)
        if verdict.blocked:
            return _error(429, "429", f"429 Too Many Requests: too many failed logins; try again in "
                                      f"{verdict.retry_after_header} s.",
                          (("Retry-After", verdict.retry_after_header),))
    principal: Principal | None = state.authenticator.cached(creds.login, creds.secret, allow_barcode=False)
    if principal is None:
        outcome = state.authenticator.verify(creds.login, creds.secret, allow_barcode=False)
        if outcome.principal is None:
            return _failed(state, address, creds.login or None, outcome.reason)
        principal = outcome.principal
    if principal.group.role != ADMIN_ROLE:
        logger.info("console refused to %s: user %r has role %s, not admin", address, principal.user.name,
                    principal.group.role)
        return _error(403, "403", "403 Forbidden: the console is for users of a group with the admin role.")
    return None


def _unauthorized() -> Page:
    return _error(401, "401", "401 Unauthorized: log in as a user of an admin group.",
                  (("WWW-Authenticate", REALM),))


def _failed(state: _State, address: str, login: str | None, reason: str) -> Page:
    logger.info("login failed from %s: console: %s", address, reason,
                extra={"event": "login-failed", "client": address, "base": "console"})
    throttle = state.throttle
    throttle.record_failure(address, login)
    settings = throttle.settings
    reached = [("address", address, throttle.check_ip(address), settings.ip_failures)]
    if login:
        reached.append(("user", login, throttle.check_account(login), settings.account_failures))
    for kind, target, verdict, limit in reached:
        if verdict.blocked and verdict.failures == limit:  # the failure that reaches the limit, logged once
            logger.warning("lockout: %s %s reached %d failed logins; refused for %s s", kind, target, limit,
                           verdict.retry_after_header,
                           extra={"event": "lockout", "target": target, "kind": kind, "base": "console"})
    return _unauthorized()


def _certificate(cfg: GatewayConfig, base: BaseConfig) -> tuple[CertificateFacts | None, str]:
    try:
        bundle = load_source(source_for(cfg, base))
        view = describe(list(bundle.chain), load_local_ca(cfg))
    except Exception as e:  # CertError names the file and the fix; anything else is shown as is
        return None, str(e)
    return CertificateFacts(view.subject, view.kind, view.not_after, view.days_left), ""


def _accounts(store: Store) -> tuple[list[GroupView], list[UserView]]:
    groups = {g.id: g for g in store.list_groups()}
    users = []
    for user in store.list_users():
        group = groups.get(user.group_id)
        users.append(UserView(user.name, group.name if group else user.group_id, group.role if group else "?",
                              user.has_barcode))
    return [GroupView(g.id, g.name, g.role, g.doc_types) for g in groups.values()], users


def _lists(throttle: Throttle, sizes: Callable[[], dict[str, int]]) -> IpListsView:
    bans = tuple(BanView(b.kind, b.target, b.failures, int(b.retry_after + 0.999)) for b in throttle.bans())
    return IpListsView(tuple(sorted(sizes().items())), bans)


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


def _ipfilter_sizes() -> dict[str, int]:
    from addons.ipfilter import list_sizes
    return list_sizes()
