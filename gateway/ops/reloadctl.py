"""``gateway reload`` without signals: a request file every running gateway process watches.

The command writes ``<state_dir>/run/reload.request`` with a fresh id; each gateway process
(however many workers there are) sees the new id within a second, reloads, and records the
outcome with that id in its own run file (``<state_dir>/run/<pid>.json``, field
``last_reload``), where the command reads it back. Works the same on Windows, where there is no
SIGHUP.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from gateway.ops.health import RUN_FOLDER
from gateway.utils.files import atomic_write_text

REQUEST_NAME = "reload.request"


def request_file(state_dir: Path) -> Path:
    return Path(state_dir) / RUN_FOLDER / REQUEST_NAME


def read_request_id(state_dir: Path) -> str | None:
    try:
        data = json.loads(request_file(state_dir).read_text(encoding="utf-8"))
        return str(data["id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_request(state_dir: Path) -> str:
    """Ask every running gateway of this state folder to reload; returns the request's id."""
    request_id = secrets.token_hex(8)
    atomic_write_text(request_file(state_dir),
                      json.dumps({"id": request_id, "at": time.time(), "by_pid": os.getpid()}))
    return request_id


class ReloadRequests:
    """One gateway process's view of the request file: a request older than the process is not new."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self._seen = read_request_id(self.state_dir)

    def pending(self) -> str | None:
        current = read_request_id(self.state_dir)
        if current is None or current == self._seen:
            return None
        self._seen = current
        return current
