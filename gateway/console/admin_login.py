"""The console's login: the same login path as the bases, read as the console needs it.

A console login is driven through ``gateway.auth.login_driver.Logins`` — the proxy's own path — so it takes
its place in the address's and the account's failure windows before it is checked, waits when
the places are held by logins still being checked, and counts a failure exactly as a login on a
base does: guessing an admin password on the console is no cheaper than on a base, whatever the
concurrency. This module only turns that decision into what the login form shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

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

    @property
    def ok(self) -> bool:
        return self.principal is not None and not self.not_admin


async def console_login(logins: Any, address: str, login: str, password: str) -> LoginResult:
    """One admin login from ``address``: ``logins`` is an ``gateway.auth.login_driver.Logins``."""
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
    return LoginResult(principal)
