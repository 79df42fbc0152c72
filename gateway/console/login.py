"""The console's login: the same login path as the bases, read as the console needs it.

A console login is driven through ``gateway.auth.logins.Logins`` — the proxy's own path — so it takes
its place in the address's and the account's failure windows before it is checked, waits when
the places are held by logins still being checked, and counts a failure exactly as a login on a
base does: guessing an admin password on the console is no cheaper than on a base, whatever the
concurrency. This module only turns that decision into what the login form shows.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from gateway.auth import secondfactor
from gateway.auth.credentials import BasicCredentials
from gateway.auth.login import Admit
from gateway.store import Principal

logger = logging.getLogger("gateway.console")

ADMIN_ROLE = "admin"
# The console's name in login events and spray budgets; never a base id.
CONSOLE = "console"


@dataclass(frozen=True)
class LoginResult:
    principal: Principal | None = None
    throttled: bool = False
    retry_after: str = ""  # whole seconds, for Retry-After
    not_admin: bool = False
    wrong_code: bool = False  # password right, one-time code missing or wrong: counted as a failed login
    must_enrol: bool = False  # password right, no second factor yet where one is required
    second_factor: str = ""  # "totp" or "recovery" when a code was used

    @property
    def ok(self) -> bool:
        return self.principal is not None and not self.not_admin and not self.wrong_code


async def console_login(logins: Any, address: str, login: str, password: str, code: str = "",
                        second_factor_required: bool = False) -> LoginResult:
    """One admin login from ``address``: ``logins`` is an ``gateway.auth.logins.Logins``.

    After the password, an admin with a second factor must give a current code (or an unused
    recovery code); a wrong or missing one counts as a failed login of the address and the account,
    in the same windows as a wrong password, so guessing codes is throttled exactly as guessing
    passwords is. Where a second factor is required and the admin has none, the login is admitted
    only to enrol one (``must_enrol``)."""
    creds = BasicCredentials(login, password) if password else None
    decision = await logins.login(address, creds, base_id=CONSOLE, base_name=CONSOLE, allow_barcode=False,
                                  whitelisted=False, malformed="" if password else "empty password")
    if not isinstance(decision, Admit):
        if decision.status == 429:
            return LoginResult(throttled=True, retry_after=decision.retry_after_header)
        return LoginResult()
    principal = decision.principal
    if principal.group.role != ADMIN_ROLE:
        logger.info("console refused to %s: user %r has role %s, not admin", address, principal.user.name,
                    principal.group.role)
        return LoginResult(principal, not_admin=True)
    loop = asyncio.get_running_loop()
    user_id = principal.user.id
    factor = await loop.run_in_executor(logins.store_pool, secondfactor.load, logins.store, user_id)
    if factor is None:
        return LoginResult(principal, must_enrol=second_factor_required)
    used = await loop.run_in_executor(logins.store_pool, secondfactor.verify, logins.store, user_id, code)
    if not used:
        await loop.run_in_executor(logins.store_pool, logins.throttle.record_failure, address, login)
        logger.warning("console login of %r from %s refused: wrong or missing one-time code", principal.user.name,
                       address, extra={"event": "login-failed", "client": address, "user": principal.user.name,
                                       "base": CONSOLE})
        return LoginResult(principal, wrong_code=True)
    return LoginResult(principal, second_factor=used)
