"""User authentication on bases with ``user_auth: true``: throttle, then credentials, then session.

The decisions are the core's (``gateway.auth.login``); this addon reads the request, drives a login
attempt through ``gateway.auth.login_driver.Logins`` (store calls in threads, argon2 in its pool) and answers.
Order inside a request, each step cheap before the next costly one:
1. the client address over its failure limit → 429 with Retry-After; nothing else is read;
2. a gateway session token (header or cookie) → the user, one store read;
3. ``Authorization: Basic`` in the success cache → admitted, unless its account is locked;
4. otherwise a login attempt: a place reserved in the address's and the account's windows
   before any check (waiting for one while they are all held), then the keyed-hash lookup and
   argon2; a failure turns the place into a failure row and is answered 401 with a challenge.
With credentials already cached and no recent failure, the hook reads only the store's change
marker and stays synchronous: no store query, no thread hop, no coroutine.
``/.gateway/login`` and ``/.gateway/logout`` are answered here and never forwarded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from mitmproxy import connection, http

from addons._context import listener_to_check
from addons._guard import deny, fail_closed
from gateway.auth.login_driver import Logins
from gateway.auth.authenticate import Authenticator, authenticator_for
from gateway.config import BaseConfig, GatewayConfig
from gateway.auth.credentials import BasicCredentials, CredentialError, is_basic, parse_authorization
from gateway.auth.login import Admit, Refuse, decide_cached
from addons.client_auth import DEVICE_KEY, device_allows
from gateway.auth.session_tokens import COOKIE_NAME, HEADER_NAME, Sessions
from gateway.store import Principal, Store, StoreError, StoreUnavailable
from gateway.store.guarded import PROBE_INTERVAL, RETRY_AFTER, GuardedStore
from gateway.store.handle import StoreHandle
from addons._background import BackgroundTask
from gateway.auth.throttle import Throttle, Verdict
from addons.ipfilter import is_whitelisted as check

logger = logging.getLogger("gateway.auth")

PREFIX = "/.gateway/"
LOGIN_PATH = PREFIX + "login"
LOGOUT_PATH = PREFIX + "logout"
# Writes (failure rows, sessions) may wait for another process's lock; two threads keep them
# off the event loop without letting a flood of failures pile up threads.
STORE_THREADS = 2
_HEADER_NAME_LOWER = HEADER_NAME.lower().encode()
PARSED_KEPT = 65_536  # connections whose last credentials are remembered (one per open connection)

T = TypeVar("T")


def challenge(base: BaseConfig) -> str:
    realm = base.name.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{realm}", charset="UTF-8"'


def is_whitelisted(client: connection.Client) -> bool:
    return bool(check(client))


@dataclass
class _State:
    store: Store
    authenticator: Authenticator
    throttle: Throttle
    sessions: Sessions
    verify_pool: ThreadPoolExecutor
    store_pool: ThreadPoolExecutor
    verify_threads: int
    logins: Logins


class Auth:
    def __init__(self, stores: StoreHandle | None = None) -> None:
        """``stores``: the process's store (gateway.store.handle); its own when none is given."""
        self._own_stores = stores is None
        self._stores = stores or StoreHandle()
        self._state: _State | None = None
        self._probe = BackgroundTask(self._probe_store)
        # By client connection: its last Authorization value, read (login, secret) and keyed, for
        # the authenticator that keyed it. A terminal sends the same header on every request of a
        # keep-alive connection; this spares reading base64 and an HMAC each time. The secret
        # stays in memory as long as the connection (which brings it again with every request).
        self._parsed: dict[str, tuple[str, BasicCredentials, str, Authenticator]] = {}

    def client_disconnected(self, client: connection.Client) -> None:
        self._parsed.pop(client.id, None)

    def running(self) -> None:
        self._probe.start()

    async def _probe_store(self) -> None:
        """While the store is down, ask it every second whether it is back, so /readyz, the
        gauge and the log say so even when no login comes to find out."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            state = self._state
            if state is None or not isinstance(state.store, GuardedStore) or state.store.health.up:
                continue
            try:
                await asyncio.get_running_loop().run_in_executor(state.store_pool, state.store.probe)
            except Exception:  # a pool shut down by a reload; the next round uses the new one
                logger.debug("store probe failed", exc_info=True)

    # --- configuration ---

    def apply_config(self, cfg: GatewayConfig) -> None:
        old = self._state
        # A store that cannot be reached now does not stop the gateway: it is opened once it
        # answers, and until then every check that needs it fails closed (gateway.store.guarded).
        store = self._stores.for_config(cfg)
        authenticator = authenticator_for(cfg, store, old.authenticator if old is not None else None)
        if old is not None and old.verify_threads == cfg.auth.verify_threads and old.store is store:
            verify_pool, store_pool = old.verify_pool, old.store_pool
        else:
            verify_pool = ThreadPoolExecutor(cfg.auth.verify_threads, thread_name_prefix="gateway-argon2")
            store_pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="gateway-store")
        throttle = Throttle(store, cfg.throttle)
        self._state = _State(store, authenticator, throttle,
                             Sessions(store, cfg.auth.session_ttl), verify_pool, store_pool,
                             cfg.auth.verify_threads, Logins(store, authenticator, throttle, verify_pool, store_pool))
        if old is not None and old.verify_pool is not verify_pool:
            old.verify_pool.shutdown(wait=False)
            old.store_pool.shutdown(wait=False)
        if self._own_stores:
            self._stores.settle(cfg)

    def done(self) -> None:
        self._probe.stop()
        self._parsed.clear()
        if self._state is not None:
            self._state.verify_pool.shutdown(wait=False)
            self._state.store_pool.shutdown(wait=False)
            self._state = None
        if self._own_stores:
            self._stores.close()

    @property
    def authenticator(self) -> Authenticator | None:
        return self._state.authenticator if self._state else None

    # --- the hook ---

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Synchronous on the common path (a cached credential, no recent failure): only a step
        that needs argon2 or a store write returns a coroutine, which mitmproxy then awaits."""
        listener = listener_to_check(flow)
        if listener is None:
            return None
        path = flow.request.path.split("?", 1)[0]
        if not listener.base.user_auth:
            if path.startswith(PREFIX):
                deny(flow, 404, "404 Not Found: this base does not use user authentication.")
            return None
        state = self._state
        if state is None:
            raise RuntimeError("Auth has no configuration applied")
        try:
            step = self._authenticate(flow, listener.base, path, state)
        except StoreError as e:
            self._store_failed(flow, e)
            return None
        return None if step is None else self._finish(flow, step)

    @fail_closed
    async def _finish(self, flow: http.HTTPFlow, step: Awaitable[None]) -> None:
        try:
            await step
        except StoreError as e:
            self._store_failed(flow, e)

    @staticmethod
    def _store_failed(flow: http.HTTPFlow, error: StoreError) -> None:
        if not isinstance(error, StoreUnavailable):
            logger.error("user store failed; request refused: %s", error)
        # else: the store's health said it once (one ERROR when it went, one INFO when it is back)
        flow.metadata["gateway_verdict"] = "gateway-error"
        flow.metadata["gateway_reason"] = "user store unavailable"
        deny(flow, 503, "503 Service Unavailable: the gateway cannot check users right now; try again later.",
             {"Retry-After": str(RETRY_AFTER)})

    def _authenticate(self, flow: http.HTTPFlow, base: BaseConfig, path: str,
                      state: _State) -> Awaitable[None] | None:
        address = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        # One read of the store's change marker for the whole request: while it holds still,
        # the throttle's memo and the success cache answer without reading the store.
        version = state.store.version()
        # The whitelist is asked only when its answer matters (a refusal, or a failure to count):
        # whitelisted addresses are never throttled, and the common path skips the lookup.
        verdict = state.throttle.check_ip(address, version)
        if verdict.blocked and not is_whitelisted(flow.client_conn):
            self._throttled(flow, verdict, f"address {address}: {verdict.failures} failed logins")
            return None
        if path.startswith(PREFIX) and path not in (LOGIN_PATH, LOGOUT_PATH):
            deny(flow, 404, f"404 Not Found: the gateway has no {path}; it serves {LOGIN_PATH} and {LOGOUT_PATH}.")
            return None
        if path in (LOGIN_PATH, LOGOUT_PATH) and flow.request.method != "POST":
            deny(flow, 405, f"405 Method Not Allowed: use POST {path}.", {"Allow": "POST"})
            return None
        # Header lookups through mitmproxy's Headers cost more than one pass over the raw names.
        authorizations: list[bytes] = []
        has_session_header = has_cookie = False
        for name, value in flow.request.headers.fields:
            lower = name.lower()
            if lower == b"authorization":
                authorizations.append(value)
            elif lower == b"cookie":
                has_cookie = True
            elif lower == _HEADER_NAME_LOWER:
                has_session_header = True
        token = self._take_token(flow, has_session_header, has_cookie) if has_session_header or has_cookie else ""
        if path == LOGOUT_PATH:
            return self._logout(flow, base, state, token)

        principal: Principal | None = None
        if token and path != LOGIN_PATH:
            principal = state.sessions.resolve(token)
            if principal is not None and not self._device_allows(flow, principal):
                # A session token carried to another device: not a guess, so not counted.
                self._unauthorized(flow, base, "session used from a device the user is not bound to",
                                   "401 Unauthorized: this user logs in only from its own devices.")
                return None
        if principal is None:
            # As headers.get("Authorization") reads it: repeated fields folded with ", ".
            authorization = authorizations[0].decode("utf-8", "surrogateescape") if len(authorizations) == 1 \
                else ", ".join(v.decode("utf-8", "surrogateescape") for v in authorizations)
            client_id = flow.client_conn.id
            parsed = self._parsed.get(client_id)
            if parsed is not None and parsed[0] == authorization and parsed[3] is state.authenticator:
                # The same header as this connection's previous request: read and keyed then.
                creds, key = parsed[1], parsed[2]
            else:
                if not authorization or not is_basic(authorization):
                    why = "session expired or unknown" if token else "no Basic credentials"
                    self._unauthorized(flow, base, why,
                                       "401 Unauthorized: log in with a user name (or none) and password.")
                    return None
                try:
                    creds = parse_authorization(authorization)
                except CredentialError as e:
                    return self._login(flow, base, path, state, address, None, str(e))
                key = state.authenticator.cache_key(creds.login, creds.secret)
                if len(self._parsed) >= PARSED_KEPT:
                    self._parsed.clear()
                self._parsed[client_id] = (authorization, creds, key, state.authenticator)
            hit = state.authenticator.lookup(key, base.login_by_barcode, version)
            if hit is None or not self._device_allows(flow, hit.principal):
                # From a device the user is not bound to, the full check runs: a failed login.
                return self._login(flow, base, path, state, address, creds)
            # A cached credential needs no place, but its account may have been locked since.
            account = state.throttle.check_account(hit.principal.user.name, version)
            if account.blocked:
                decision = decide_cached(hit.principal, verdict, account, is_whitelisted(flow.client_conn))
                if isinstance(decision, Refuse):
                    self._refused(flow, base, decision)
                    return None
            if hit.refresh:
                return self._refresh_then_admit(flow, base, path, state, creds, hit.principal)
            principal = hit.principal
        return self._admit(flow, base, path, state, principal)

    @staticmethod
    def _device_allows(flow: http.HTTPFlow, principal: Principal) -> bool:
        return device_allows(principal.user.id, flow.metadata.get(DEVICE_KEY))

    def _admit(self, flow: http.HTTPFlow, base: BaseConfig, path: str, state: _State,
               principal: Principal) -> Awaitable[None] | None:
        if path == LOGIN_PATH:
            return self._start_session(flow, base, state, principal)
        self._set_identity(flow, principal)
        return None

    async def _login(self, flow: http.HTTPFlow, base: BaseConfig, path: str, state: _State, address: str,
                     creds: BasicCredentials | None, malformed: str = "") -> None:
        decision = await state.logins.check(address, creds, base_id=base.id, base_name=base.name,
                                            allow_barcode=base.login_by_barcode,
                                            whitelisted=is_whitelisted(flow.client_conn), malformed=malformed,
                                            device_allows=lambda principal: self._device_allows(flow, principal))
        if isinstance(decision, Admit):
            step = self._admit(flow, base, path, state, decision.principal)
            if step is not None:
                await step
            return
        self._refused(flow, base, decision, f"401 Unauthorized: {malformed}." if malformed else "")

    async def _refresh_then_admit(self, flow: http.HTTPFlow, base: BaseConfig, path: str, state: _State,
                                  creds: BasicCredentials, principal: Principal) -> None:
        # The entry nears its maximum age: argon2 runs again in the background (once, however
        # many requests ask), while this request goes on with the entry that still holds.
        state.logins.shared_verification(creds, base.login_by_barcode)
        step = self._admit(flow, base, path, state, principal)
        if step is not None:
            await step

    async def _logout(self, flow: http.HTTPFlow, base: BaseConfig, state: _State, token: str) -> None:
        if token:
            await self._off_loop(state.store_pool, state.sessions.end, token)
        self._answer_json(flow, base, 200, {"logged_out": True}, cookie="")
        flow.metadata["gateway_verdict"] = "allowed"

    async def _start_session(self, flow: http.HTTPFlow, base: BaseConfig, state: _State,
                             principal: Principal) -> None:
        token, _expires = await self._off_loop(state.store_pool, state.sessions.create, principal)
        self._set_identity(flow, principal)
        flow.metadata["gateway_verdict"] = "allowed"
        self._answer_json(flow, base, 200, {"token": token, "expires_in": int(state.sessions.ttl),
                                            "user": principal.user.name, "header": HEADER_NAME,
                                            "cookie": COOKIE_NAME}, cookie=token)

    # --- answers ---

    @staticmethod
    async def _off_loop(pool: ThreadPoolExecutor, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, func, *args)

    def _refused(self, flow: http.HTTPFlow, base: BaseConfig, refusal: Refuse, text: str = "") -> None:
        if refusal.status == 429:
            self._throttled(flow, Verdict(True, 0, refusal.retry_after), refusal.reason)
        else:
            self._unauthorized(flow, base, refusal.reason, text or "401 Unauthorized: wrong user name, password or barcode.")

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
        flow.response = http.Response.make(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), {
            "Content-Type": "application/json; charset=utf-8",
            "Cache-Control": "no-store",
            "Set-Cookie": f"{COOKIE_NAME}={cookie}; {attributes}{lifetime}",
        })

    @staticmethod
    def _take_token(flow: http.HTTPFlow, has_session_header: bool, has_cookie: bool) -> str:
        """The session token, removed from the request so it never reaches the back end.

        ``has_session_header`` / ``has_cookie``: whether the request carries them at all.
        """
        headers = flow.request.headers
        token = headers.pop(HEADER_NAME, "").strip() if has_session_header else ""
        if not has_cookie:
            return token
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
