"""Security events of one-shot commands, handed to the running gateway.

``gateway bans lift`` or ``gateway user remove`` run in their own short process; the console's
event list (gateway/console/events.py) only sees records logged inside the gateway process. The
command appends its security events (records with an ``event`` field) as JSON lines to
``<state_dir>/events.jsonl``; every running gateway process reads what was appended since its
last look (once a second, with the config watcher) and logs it again under ``gateway.cli`` with
the same ``event`` field, so it reaches the console, the security log and the log file alike.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

JOURNAL_NAME = "events.jsonl"
# Only a hand-over: the gateway reads it within a second. Start again past this size.
MAX_BYTES = 1024 * 1024

logger = logging.getLogger("gateway.cli")


def journal_file(state_dir: Path) -> Path:
    return Path(state_dir) / JOURNAL_NAME


class JournalHandler(logging.Handler):
    """Installed by one-shot commands: writes their security events for the running gateway."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(level=logging.INFO)
        self.path = journal_file(state_dir)

    def emit(self, record: logging.LogRecord) -> None:
        kind = getattr(record, "event", None)
        if not kind or not self.path.parent.is_dir():  # never create a state folder for this
            return
        try:
            line = json.dumps({"at": record.created, "event": str(kind), "level": record.levelname,
                               "message": record.getMessage(), "base": str(getattr(record, "base", "") or ""),
                               "client": str(getattr(record, "client", "") or ""), "pid": os.getpid()},
                              ensure_ascii=False)
            if self.path.exists() and self.path.stat().st_size > MAX_BYTES:
                self.path.unlink()
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except Exception:
            self.handleError(record)


class JournalReader:
    """The running gateway's side: what was appended since the last poll, logged again."""

    def __init__(self, state_dir: Path) -> None:
        self.path = journal_file(state_dir)
        try:
            self._offset = self.path.stat().st_size  # what came before the start is old news
        except OSError:
            self._offset = 0

    def poll(self) -> int:
        try:
            size = self.path.stat().st_size
        except OSError:
            self._offset = 0
            return 0
        if size < self._offset:
            self._offset = 0  # started over
        if size == self._offset:
            return 0
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read(size - self._offset)
        complete = chunk.rpartition(b"\n")[0]
        self._offset += len(complete) + (1 if complete else 0)
        count = 0
        for raw in complete.splitlines():
            try:
                item = json.loads(raw.decode("utf-8"))
                level = logging.getLevelName(str(item.get("level", "INFO")))
                logger.log(level if isinstance(level, int) else logging.INFO,
                           "%s (by a `gateway` command, pid %s, at %s)", item["message"], item.get("pid"),
                           time.strftime("%H:%M:%S", time.localtime(float(item.get("at", 0)))),
                           extra={"event": str(item["event"]), "base": item.get("base", ""),
                                  "client": item.get("client", ""), "from_cli": True})
                count += 1
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                continue
        return count
