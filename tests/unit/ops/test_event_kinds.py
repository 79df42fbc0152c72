"""Every security event the code raises reaches the security log and the console's journal.

A new kind added in one module and forgotten in the list would be written to the main log only:
pushed out by noise there, and missing from the console's events page.
"""

from __future__ import annotations

import re
from pathlib import Path

from gateway.ops.logsetup import CONSOLE_EVENTS as CONSOLE_KINDS
from gateway.ops.logsetup import SECURITY_EVENTS

ROOT = Path(__file__).resolve().parents[3]
# Operational news, not security history: the main log is their place.
OPERATIONAL = {
    "backup-failed", "backups-expired", "backup-cleanup-failed", "worker-ready", "worker-exited",
    "plaintext-base", "open-files-limit", "ip-list-unreadable", "ip-list-deleted", "ip-list-bad-line",
    "backend-error", "tls-handshake-failed", "store-down", "store-up",
}


def raised_kinds() -> set[str]:
    kinds: set[str] = set()
    for folder in ("gateway", "addons"):
        for path in (ROOT / folder).rglob("*.py"):
            kinds |= set(re.findall(r'"event": "([a-z0-9-]+)"', path.read_text(encoding="utf-8")))
    return kinds


def test_every_raised_kind_is_either_security_or_named_operational() -> None:
    kinds = raised_kinds()
    assert {"spray-detected", "state-lost", "lockout", "ban-lifted", "console-change"} <= kinds
    unlisted = kinds - SECURITY_EVENTS - OPERATIONAL
    assert not unlisted, f"add these to gateway/ops/logsetup.py SECURITY_EVENTS (or to OPERATIONAL here): {unlisted}"


def test_the_console_shows_every_security_event() -> None:
    assert SECURITY_EVENTS <= CONSOLE_KINDS
