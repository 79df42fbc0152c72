"""The shared journal of security events: ``<state_dir>/events.jsonl``, one JSON object a line.

Every gateway process and every ``gateway`` command sharing a state folder appends to it (a
``logging.Handler`` on the ``gateway`` logger), so the console shows what any of them did — a
ban lifted by ``gateway bans lift`` in a terminal, a failed login seen by another worker — and
not only what its own process saw. Lines are appended with one ``write`` on a file opened in
append mode, which keeps concurrent writers' lines whole. Past ``MAX_BYTES`` the file is renamed
to ``events.jsonl.1`` (the one before is dropped), so the journal stays bounded; each writer
notices a rotation within a second and reopens.

Only records carrying a security ``event`` are kept; their message is the log line, which by
contract never holds a secret.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from gateway.ops.eventfold import FoldEvents
from gateway.ops.logsetup import CONSOLE_EVENTS

JOURNAL_NAME = "events.jsonl"
MAX_BYTES = 2 * 1024 * 1024
CHECK_INTERVAL = 1.0  # seconds between checks for a rotated or removed journal file
FIELDS = ("base", "client", "user", "target", "admin")


@dataclass(frozen=True)
class JournalEvent:
    at: datetime.datetime  # UTC
    event: str
    level: str
    message: str
    base: str = ""
    client: str = ""
    user: str = ""
    target: str = ""
    admin: str = ""


def journal_path(state_dir: Path) -> Path:
    return Path(state_dir) / JOURNAL_NAME


class JournalHandler(logging.Handler):
    def __init__(self, state_dir: Path) -> None:
        super().__init__(level=logging.DEBUG)
        self.path = journal_path(state_dir)
        self._write_lock = threading.Lock()
        self._fd: int | None = None
        self._next_check = 0.0
        # A flood of one kind from one address adds a few lines and a count, never pages of them;
        # lockouts, bans and changes are never folded (gateway/ops/eventfold.py).
        self.addFilter(FoldEvents(self.handle))

    def handle(self, record: logging.LogRecord) -> bool:
        # Every record of the ``gateway`` loggers comes here, one access-log record a request
        # among them; only console events are written, so the others skip the fold filter and
        # the handler's lock, which emit() would have ended in a no-op anyway.
        if getattr(record, "event", None) not in CONSOLE_EVENTS:
            return False
        return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        kind = getattr(record, "event", None)
        if kind not in CONSOLE_EVENTS:
            return
        try:
            entry = {"at": record.created, "event": str(kind), "level": record.levelname,
                     "message": record.getMessage()}
            for name in FIELDS:
                value = getattr(record, name, "")
                if value:
                    entry[name] = str(value)
            line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
            with self._write_lock:
                try:
                    self._append(line)
                except OSError:
                    # The state disk full or read-only: the event stays in the log, not in the
                    # console's copy, and the file is let go so the disk can be checked and
                    # mounted again; the next event tries to open it afresh.
                    self._close_fd()
        except Exception:  # the journal must never break the code that logged
            self.handleError(record)

    def _append(self, line: bytes) -> None:
        # The file stays open between events (a refused-connection flood logs one per
        # connection); once a second it is checked for rotation, here or by another process.
        now = time.monotonic()
        if self._fd is None or now >= self._next_check:
            self._next_check = now + CHECK_INTERVAL
            self._reopen()
        if self._fd is not None:
            os.write(self._fd, line)

    def _reopen(self) -> None:
        if not self.path.parent.is_dir():
            self._close_fd()
            return  # no state folder (yet): nothing to share events with
        try:
            st: os.stat_result | None = self.path.stat()
        except FileNotFoundError:
            st = None
        if st is not None and st.st_size > MAX_BYTES:
            try:
                os.replace(self.path, self.path.with_name(JOURNAL_NAME + ".1"))
                st = None
            except OSError:
                pass  # another process holds it open (Windows): rotate next time
        if self._fd is not None and (st is None or not os.path.samestat(st, os.fstat(self._fd))):
            self._close_fd()
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o640)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass  # a close that reports a write the disk refused: the fd is gone all the same

    def close(self) -> None:
        with self._write_lock:
            self._close_fd()
        super().close()


_installed: JournalHandler | None = None
_install_lock = threading.Lock()


def install_journal(state_dir: Path, logger_name: str = "gateway") -> JournalHandler:
    """The journal handler on the ``gateway`` logger, for this state folder.

    One per process: a process serves one state folder (changing it needs a restart), so a
    later call for another folder replaces the handler rather than writing to both.
    """
    global _installed
    path = journal_path(state_dir).resolve()
    with _install_lock:
        if _installed is not None and _installed.path.resolve() == path:
            return _installed
        handler = JournalHandler(state_dir)
        log = logging.getLogger(logger_name)
        if _installed is not None:
            log.removeHandler(_installed)
            _installed.close()
        log.addHandler(handler)
        _installed = handler
        return handler


def _parse(line: bytes) -> JournalEvent | None:
    try:
        raw = json.loads(line)
        return JournalEvent(
            at=datetime.datetime.fromtimestamp(float(raw["at"]), datetime.timezone.utc),
            event=str(raw["event"]), level=str(raw.get("level", "")), message=str(raw.get("message", "")),
            **{name: str(raw.get(name, "")) for name in FIELDS})
    except (ValueError, KeyError, TypeError):
        return None  # a torn or foreign line is skipped, never fatal


def read_journal(state_dir: Path) -> list[JournalEvent]:
    """Every event kept, newest first."""
    path = journal_path(state_dir)
    events: list[JournalEvent] = []
    for part in (path.with_name(JOURNAL_NAME + ".1"), path):
        try:
            data = part.read_bytes()
        except FileNotFoundError:
            continue
        events += [e for e in map(_parse, data.splitlines()) if e is not None]
    events.sort(key=lambda e: e.at, reverse=True)
    return events


@dataclass(frozen=True)
class EventFilter:
    kind: str = ""
    base: str = ""
    address: str = ""
    user: str = ""

    def matches(self, event: JournalEvent) -> bool:
        if self.kind and event.event != self.kind:
            return False
        if self.base and self.base.casefold() not in event.base.casefold():
            return False
        if self.address and self.address not in (event.client, event.target) \
                and not event.client.startswith(self.address):
            return False
        if self.user:
            wanted = self.user.casefold()
            # Events from the bases name the user only in their text ("user 'иванов': wrong password").
            if wanted not in (event.user.casefold(), event.admin.casefold(), event.target.casefold()) \
                    and f"'{wanted}'" not in event.message.casefold():
                return False
        return True


@dataclass(frozen=True)
class EventPage:
    events: tuple[JournalEvent, ...]
    page: int
    pages: int
    total: int


def filter_page(events: Iterable[JournalEvent], wanted: EventFilter, page: int, per_page: int) -> EventPage:
    chosen = [e for e in events if wanted.matches(e)]
    pages = max(1, -(-len(chosen) // per_page))
    page = min(max(1, page), pages)
    start = (page - 1) * per_page
    return EventPage(tuple(chosen[start:start + per_page]), page, pages, len(chosen))
