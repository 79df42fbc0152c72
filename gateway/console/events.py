"""Which log records are security events for the console: the security log's own list plus the
back end's failures (gateway/ops/logsetup.py). The console reads them from the shared journal
(journal.py), which every process and every `gateway` command writes.
"""

from __future__ import annotations

from gateway.ops.logsetup import CONSOLE_EVENTS

SECURITY_EVENTS = CONSOLE_EVENTS
