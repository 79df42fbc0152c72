"""User authentication on bases with ``user_auth: true``: throttle, then credentials, then session.

Order inside a request, each step cheap before the next costly one:
1. the client address over its failure limit → 429 with Retry-After; nothing else is read;
2. a gateway session token (header or cookie) → the user, one store read;
3. ``Authorization: Basic`` → the success cache, else argon2 in a bounded thread pool;
4. any failure is counted (address and named account) and answered 401 with a Basic challenge.
``/.gateway/login`` and ``/.gateway/logout`` are answered here and never forwarded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from mitmproxy import connection, http

from addons._context import listener_to_check
from addons._guard import already_answered, deny, fail_closed
from gateway.accounts.authenticate import Authenticator
from gateway.accounts.keys import load_or_create_secret
from gateway.config import BaseConfig, GatewayConfig
from gateway.credentials import BasicCredentials, CredentialError, is_basic, parse_authorization
from gateway.sessions import COOKIE_NAME, HEADER_NAME, Sessions
from gateway.store import Principal, Store, StoreError, open_store
from gateway.throttle import Throttle, Verdict

logger = logging.getLogger("gateway.auth")

PREFIX = "/.gateway/"
LOGIN_PATH = PREFIX + "login"
LOGOUT_PATH = PREFIX + "logout"
# Writes (failure rows, sessions) may wait for another process's lock; two threads keep them
# off the event loop without letting a flood of failures pile up threads.
STORE_THREADS = 2

T = TypeVar("T")


def challenge(base: BaseConfig) -> str:
    realm = base.name.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{realm}", charset="UTF-8"'


def is_whitelisted(client: connection.Client) -> bool:
    try:
        from addons.ipfilter import is_whitelisted as check
    except ImportError:
        return False
    return bool(check(client))


@dataclass
class _State:
    store: Store
    store_key: tuple[Any, ...]
    authenticator: Authenticator
    throttle: Throttle
    sessions: Sessions
    verify_pool: ThreadPoolExecutor
    store_pool: ThreadPoolExecutor
    verify_threads: int


class Auth:
    def __init__(self) -> None:
        self._state: _State | None = None

    # --- configuration ---

    def apply_config(self, cfg: GatewayConfig) -> None:
        old = self._state
        store_key = (cfg.state_dir, cfg.store.backend, cfg.store.redis_url)
        if old is not None and old.store_key == store_key:
            store, authenticator = old.store, old.authenticator
            authenticator.cache_seconds = cfg.auth.cache_seconds
        else:
            store = open_store(cfg.state_dir, cfg.store.backend, cfg.store.redis_url)
            authenticator = Authenticator(store, load_or_create_secret(cfg.state_dir), cfg.auth.cache_seconds)
        if old is not None and old.verify_threads == cfg.auth.verify_threads and old.store is store:
            verify_pool, store_pool = old.verify_pool, old.store_pool
        else:
            verify_pool = ThreadPoolExecutor(cfg.auth.verify_threads, thread_name_prefix="gateway-argon2")
            store_pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="gateway-store")
        self._state = _State(store, store_key, authenticator, Throttle(store, cfg.throttle),
                             Sessions(store, cfg.auth.session_ttl), verify_pool, store_pool,
                             cfg.auth.verify_threads)
        if old is not None and old.verify_pool is not verify_pool:
            old.verify_pool.shutdown(wait=False)
            old.store_pool.shutdown(wait=False)
        if old is not None and old.store is not store:
            old.store.close()

    def done(self) -> None:
        if self._state is not None:
            self._state.verify_pool.shutdown(wait=False)
            self._state.store_pool.shutdown(wait=False)
            self._state.store.close()
            self._state = None

    @property
    def authenticator(self) -> Authenticator | None:
        return self._state.authenticator if self._state else None

    # --- the hook ---

    @fail_closed
    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        listener = listener_to_check(flow)
        if listener is None:
            return
        path = flow.request.path.split("?", 1)[0]
        if not listener.base.user_auth:
            if path.startswith(PREFIX):
                deny(flow, 404, "404 Not Found: this base does not use user authentication.")
            return
        state = self._state
        if state is None:
            raise RuntimeError("Auth has no configuration applied")
        try:
            await self._authenticate(flow, listener.base, path, state)
        except StoreError as e:
            logger.error("user store failed; request refused: %s", e)
            flow.metadata["gateway_verdict"] = "gateway-error"
            flow.metadata["gateway_reason"] = "user store unavailable"
            deny(flow, 503, "503 Service Unavailable: the gateway cannot check users right now; try again later.")

    async def _authenticate(self, flow: http.HTTPFlow, base: BaseConfig, path: str, state: _State) -> None:
        address = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        trusted = is_whitelisted(flow.client_conn)
        if not trusted:
            verdict = state.throttle.check_ip(address)
            if verdict.blocked:
                self._throttled(flow, verdict, f"address {address}: {verdict.failures} failed logins")
                return
        if path.startswith(PREFIX) and path not in (LOGIN_PATH, LOGOUT_PATH):
            deny(flow, 404, f"404 Not Found: the gateway has no {path}; it serves {LOGIN_PATH} and {LOGOUT_PATH}.")
            return
        if path in (LOGIN_PATH, LOGOUT_PATH) and flow.request.method != "POST":
            deny(flow, 405, f"405 Method Not Allowed: use POST {path}.", {"Allow": "POST"})
            return
        token = self._take_token(flow)
        if path == LOGOUT_PATH:
            if token:
                await self._off_loop(state.store_pool, state.sessions.end, token)
            self._answer_json(flow, base, 200, {"logged_out": True}, cookie="")
            flow.metadata["gateway_verdict"] = "allowed"
            return

        principal: Principal | None = None
        if token and path != LOGIN_PATH:
            principal = state.sessions.resolve(token)
        authorization = flow.request.headers.get("Authorization", "")
        if principal is None:
            if not authorization or not is_basic(authorization):
                why = "session expired or unknown" if token else "no Basic credentials"
                self._unauthorized(flow, base, why, "401 Unauthorized: log in with a user name (or none) and password.")
                return
            try:
                creds = parse_authorization(authorization)
            except CredentialError as e:
                await self._fail(flow, base, state, address, None, trusted, str(e), f"401 Unauthorized: {e}.")
                return
            principal = await self._check(flow, base, state, address, trusted, creds)
            if principal is None:
                return
        if path == LOGIN_PATH:
            token, expires = await self._off_loop(state.store_pool, state.sessions.create, principal)
            self._set_identity(flow, principal)
            flow.metadata["gateway_verdict"] = "allowed"
            self._answer_json(flow, base, 200, {"token": token, "expires_in": int(state.sessions.ttl),
                                                "user": principal.user.name, "header": HEADER_NAME,
                                                "cookie": COOKIE_NAME}, cookie=token)
            return
        self._set_identity(flow, principal)

    async def _check(self, flow: http.HTTPFlow, base: BaseConfig, state: _State, address: str, trusted: bool,
                     creds: BasicCredentials) -> Principal | None:
        if creds.login and not trusted:
            verdict = state.throttle.check_account(creds.login)
            if verdict.blocked:
                self._throttled(flow, verdict, f"user {creds.login!r}: {verdict.failures} failed logins")
                return None
        principal = state.authenticator.cached(creds.login, creds.secret, base.login_by_barcode)
        if principal is not None:
            return principal
        outcome = await self._off_loop(state.verify_pool, state.authenticator.verify,
                                       creds.login, creds.secret, base.login_by_barcode)
        if outcome.principal is None:
            await self._fail(flow, base, state, address, creds.login or None, trusted, outcome.reason,
                             "401 Unauthorized: wrong user name, password or barcode.")
        return outcome.principal

    # --- answers ---

    @staticmethod
    async def _off_loop(pool: ThreadPoolExecutor, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, func, *args)

    async def _fail(self, flow: http.HTTPFlow, base: BaseConfig, state: _State, address: str,
                    login: str | None, trusted: bool, reason: str, text: str) -> None:
        if not trusted:
            await self._off_loop(state.store_pool, state.throttle.record_failure, address, login)
        logger.info("login failed from %s: %s", address, reason,
                    extra={"event": "login-failed", "client": address, "base": base.name})
        self._unauthorized(flow, base, reason, text)

    @staticmethod
    def _unauthorized(flow: http.HTTPFlow, base: BaseConfig, reason: str, text: str) -> None:
        flow.metadata["gateway_verdict"] = "denied-auth"
        flow.metadata["gateway_reason"] = reason
        deny(flow, 401, text, {"WWW-Authenticate": challenge(base)})

    @staticmethod
    def _throttled(flow: http.HTTPFlow, verdict: Verdict, reason: str) -> None:
        flow.metadata["gateway_verdict"] = "throttled"
        flow.metadata["gateway_reason"] = reason
        deny(flow, 429, f"429 Too Many Requests: too many failed logins; try again in "
                        f"{verdict.retry_after_header} s.", {"Retry-After": verdict.retry_after_header})

    @staticmethod
    def _answer_json(flow: http.HTTPFlow, base: BaseConfig, status: int, body: dict[str, Any], cookie: str) -> None:
        flow.request.stream = False
        attributes = "Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if base.https else "")
        lifetime = "" if cookie else "; Max-Age=0"
        flow.response = http.Response.make(status, json.dumps(body).encode("utf-8"), {
            "Content-Type": "application/json; charset=utf-8",
            "Cache-Control": "no-store",
            "Set-Cookie": f"{COOKIE_NAME}={cookie}; {attributes}{lifetime}",
        })

    @staticmethod
    def _take_token(flow: http.HTTPFlow) -> str:
        """The session token, removed from the request so it never reaches the back end."""
        token = flow.request.headers.pop(HEADER_NAME, "").strip()
        cookies = flow.request.cookies
        if COOKIE_NAME in cookies:
            token = token or cookies.get(COOKIE_NAME, "").strip()
            del cookies[COOKIE_NAME]
            if not flow.request.headers.get("Cookie", "").strip():
                flow.request.headers.pop("Cookie", None)
        return token

    @staticmethod
    def _set_identity(flow: http.HTTPFlow, principal: Principal) -> None:
        flow.metadata["gateway_user"] = principal.user.name
        flow.metadata["gateway_user_id"] = principal.user.id
        flow.metadata["gateway_group"] = principal.group.name
        flow.metadata["gateway_role"] = principal.group.role
        flow.metadata["gateway_doc_types"] = tuple(principal.group.doc_types)
