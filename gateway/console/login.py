"""The console's login step: the one place that talks to the throttle and the authenticator.

Failed console logins count against the same failed-login limits as logins on the bases (the
address's and the account's window in the shared store), so guessing an admin password on the
console is no cheaper than on a base. Kept in one small module so the throttle's own
"login step" can replace its body without touching the console.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.accounts.authenticate import Authenticator
from gateway.store import Principal
from gateway.throttle import Throttle

logger = logging.getLogger("gateway.console")

ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class LoginResult:
    principal: Principal | None = None
    throttled: bool = False
    retry_after: str = ""  # whole seconds, for Retry-After
    not_admin: bool = False

    @property
    def ok(self) -> bool:
        return self.principal is not None and not self.not_admin


def login_step(throttle: Throttle, authenticator: Authenticator, address: str, login: str,
               password: str) -> LoginResult:
    """Check the limits, then the credentials; count a failure. Runs in a thread (argon2)."""
    verdict = throttle.check_ip(address)
    if not verdict.blocked and login:
        verdict = throttle.check_account(login)
    if verdict.blocked:
        return LoginResult(throttled=True, retry_after=verdict.retry_after_header)
    principal = authenticator.cached(login, password, allow_barcode=False) if password else None
    if principal is None:
        reason = "empty password"
        if password:
            outcome = authenticator.verify(login, password, allow_barcode=False)
            principal, reason = outcome.principal, outcome.reason
        if principal is None:
            _failed(throttle, address, login, reason)
            return LoginResult()
    if principal.group.role != ADMIN_ROLE:
        logger.info("console refused to %s: user %r has role %s, not admin", address, principal.user.name,
                    principal.group.role)
        return LoginResult(principal, not_admin=True)
    return LoginResult(principal)


def _failed(throttle: Throttle, address: str, login: str, reason: str) -> None:
    logger.info("login failed from %s: console: %s", address, reason,
                extra={"event": "login-failed", "client": address, "base": "console", "user": login})
    throttle.record_failure(address, login or None)
    settings = throttle.settings
    reached = [("address", address, throttle.check_ip(address), settings.ip_failures)]
    if login:
        reached.append(("user", login, throttle.check_account(login), settings.account_failures))
    for kind, target, verdict, limit in reached:
        if verdict.blocked and verdict.failures == limit:  # the failure that reaches the limit, logged once
            logger.warning("lockout: %s %s reached %d failed logins; refused for %s s", kind, target, limit,
                           verdict.retry_after_header,
                           extra={"event": "lockout", "target": target, "kind": kind, "base": "console"})
