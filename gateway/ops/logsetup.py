"""Log output: plain text for a person at a terminal, or one JSON object per line for machines.

Records may carry structured fields through ``extra=`` (event, base, client, user, ...); the
JSON format keeps them as keys, the text format appends them as ``key=value``. Access entries
(logger ``gateway.access``, one per request) are already a readable line in the text format,
so their fields are not repeated there.

The configured level filters what is written, at the handler; the ``gateway`` loggers always
produce INFO records, because metrics count some of them (config reloads) whatever is written.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import math
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from gateway.config import LogSettings
from gateway.ops.eventfold import FoldEvents
from gateway.ops.logrotate import PrivateRotatingFileHandler, SharedFileHandler, make_log_folder

ACCESS_LOGGER = "gateway.access"

# Attributes every LogRecord has; anything else on a record came from extra=.
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", "taskName"}


def structured_fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class _SecondCache:
    """The text of the current second, made once per second instead of once per log record (one
    access-log record a request). One (second, text) tuple, replaced whole: safe across threads."""

    def __init__(self, make: Callable[[int], str]) -> None:
        self._make = make
        self._last: tuple[int, str] = (-1, "")

    def text(self, second: int) -> str:
        last = self._last
        if last[0] == second:
            return last[1]
        text = self._make(second)
        self._last = (second, text)
        return text


def _utc_second(second: int) -> str:
    return datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def iso_time(created: float, seconds: _SecondCache) -> str:
    """As ``datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")``, from
    the cached second: the same text (fromtimestamp rounds to the microsecond first, so does this)."""
    frac, whole = math.modf(created)
    micro = round(frac * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    elif micro < 0:
        second, micro = second - 1, micro + 1_000_000
    return f"{seconds.text(second)}.{micro // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._seconds = _SecondCache(_utc_second)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": iso_time(record.created, self._seconds),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in structured_fields(record).items():
            entry.setdefault(key, value if isinstance(value, (str, int, float, bool, type(None))) else str(value))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        self._seconds = _SecondCache(lambda second: time.strftime(self.datefmt or "", self.converter(second)))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt != self.datefmt or not datefmt:
            return super().formatTime(record, datefmt)
        # Whole seconds only (no %f in the format): the text depends on int(created) alone.
        return self._seconds.text(int(record.created))

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.name == ACCESS_LOGGER:
            return line
        fields = {k: v for k, v in structured_fields(record).items() if k != "client" or v}
        if fields and "event" in fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return line


FOLD_WINDOW = 10.0
FOLD_AFTER = 5  # identical warnings written before folding starts
# Events that make the security history; with a log file they also go to <file>.security.log,
# rotated on their own, so a flood of noise never rotates them away.
SECURITY_EVENTS = frozenset({
    "ip-denied", "login-failed", "login-refused", "throttled", "banned", "denied-auth", "denied-policy",
    "policy-denied", "connection-limit", "refused-head", "http2-reset-flood", "reset-ban", "config-reloaded",
    "config-reload-refused", "admin-login", "admin-login-failed", "lockout", "bad-request",
    "ban-lifted", "spray-detected", "proxy-protocol-refused", "state-lost", "state-init", "new-local-ca",
    "user-added", "user-removed", "password-changed", "weak-password-forced",
    "console-change", "console-login", "console-logout", "console-refused",
    "acme-renewal-failed", "acme-certificate-installed", "second-factor-reset", "cleartext-credentials",
    "rate-limited",
    "device-refused", "device-added", "device-revoked", "device-renewed",
    "device-link-created", "device-link-used", "device-link-failed",
})
# What the console's events page shows (the shared journal): the security events, and failures
# of the back end an administrator wants to see beside them.
CONSOLE_EVENTS = SECURITY_EVENTS | {"backend-error", "store-down", "store-up"}


class FoldRepeats(logging.Filter):
    """Identical warnings and errors (same logger, level and text) are written FOLD_AFTER times
    per FOLD_WINDOW seconds; the rest are counted and summed up in one line:
    "… repeated 63600 times in 50 s". A log flood then costs a few lines, not the disk."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key → [window start, count]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "_folded", False):
            return True
        key = (record.name, record.levelno, text_of(record)[:500])
        now = record.created
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= FOLD_WINDOW:
            if entry is not None and entry[1] > FOLD_AFTER:
                self._summary(record, int(entry[1] - FOLD_AFTER), now - entry[0])
            if len(self._seen) > 4096:
                self._seen.clear()
            self._seen[key] = [now, 1]
            return True
        entry[1] += 1
        return entry[1] <= FOLD_AFTER

    @staticmethod
    def _summary(record: logging.LogRecord, count: int, seconds: float) -> None:
        summary = logging.LogRecord(record.name, record.levelno, record.pathname, record.lineno,
                                    "%s … repeated %d more times in %.0f s",
                                    (text_of(record)[:300], count, seconds), None)
        summary._folded = True  # type: ignore[attr-defined]
        logging.getLogger(record.name).handle(summary)


def text_of(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return str(record.msg)


class SecurityEvents(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return str(getattr(record, "event", "")) in SECURITY_EVENTS or getattr(record, "verdict", "") in (
            "denied-ip", "denied-auth", "throttled", "denied-policy")


def security_log_path(settings: LogSettings) -> Path | None:
    return settings.file.with_name(settings.file.stem + ".security.log") if settings.file is not None else None


def _file_handler(path: Path, settings: LogSettings, shared: bool, delay: bool = False) -> logging.Handler:
    if shared:
        # Several processes write this file; only the supervisor rotates it (gateway/ops/logrotate.py).
        return SharedFileHandler(path, encoding="utf-8", delay=delay)
    return PrivateRotatingFileHandler(
        path, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8", delay=delay)


class DroppedLines:
    """Log lines that could not be written (a full or failing log disk). The gateway serves on
    without them; the count is ``gateway_log_lines_dropped_total``, and the first line that can
    be written again is preceded by one that says how many were lost, when and why."""

    def __init__(self) -> None:
        self.total = 0  # since the process started: the metric
        self.pending = 0  # not yet reported in the log
        self.since = 0.0
        self.cause = ""
        self._lock = threading.Lock()

    def failed(self, cause: str) -> None:
        with self._lock:
            self.total += 1
            if self.pending == 0:
                self.since = time.time()
            self.pending += 1
            self.cause = cause

    def take_report(self) -> str | None:
        with self._lock:
            if not self.pending:
                return None
            count, since, cause = self.pending, self.since, self.cause
            self.pending = 0
        when = datetime.fromtimestamp(since).strftime("%Y-%m-%d %H:%M:%S")
        return f"{count} log line(s) could not be written since {when} ({cause}); the gateway served on without them"


dropped_lines = DroppedLines()


def _count_drops(handler: logging.StreamHandler) -> None:  # type: ignore[type-arg]
    """A line this file handler cannot write is counted and thrown away (never kept in a buffer
    that grows while the disk is full), and reported once writing works again."""
    emit = handler.emit
    failures: list[BaseException | None] = []

    def handle_error(record: logging.LogRecord) -> None:
        failures.append(sys.exc_info()[1])

    def counted_emit(record: logging.LogRecord) -> None:
        failures.clear()
        try:
            emit(record)
        except Exception as e:  # FileHandler reopening the file raises outside its own try
            failures.append(e)
        if failures:
            error = failures[0]
            dropped_lines.failed(getattr(error, "strerror", None) or str(error) or type(error).__name__)
            _discard_stream(handler)
            return
        report = dropped_lines.take_report()
        if report is not None:
            try:
                emit(logging.LogRecord("gateway.log", logging.WARNING, __file__, 0, report, None, None))
            except Exception as e:
                failures.append(e)
            if failures:  # gone again at once: report it next time
                dropped_lines.failed("the report itself could not be written")
                _discard_stream(handler)

    handler.handleError = handle_error  # type: ignore[method-assign]
    handler.emit = counted_emit  # type: ignore[method-assign]


def _discard_stream(handler: logging.StreamHandler) -> None:  # type: ignore[type-arg]
    """Close the file, dropping what its buffer still holds; FileHandler opens it again on the next line."""
    stream = handler.stream
    if not isinstance(handler, logging.FileHandler) or stream is None:
        return
    handler.stream = None  # type: ignore[assignment]
    try:
        stream.close()
    except OSError:
        pass


def configure_logging(settings: LogSettings, *, shared: bool = False) -> None:
    """``shared``: this process is one of several writing the same files (workers, supervisor)."""
    handler: logging.Handler
    if settings.file is not None:
        make_log_folder(settings.file.parent)
        handler = _file_handler(settings.file, settings, shared)
        _count_drops(handler)  # type: ignore[arg-type]
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    handler.setLevel(settings.level)
    handler.addFilter(FoldRepeats())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    security_file = security_log_path(settings)
    if security_file is not None:
        security = _file_handler(security_file, settings, shared, delay=True)  # made with the first event
        _count_drops(security)  # type: ignore[arg-type]
        security.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
        security.addFilter(SecurityEvents())
        # A flood of one kind from one address writes a few lines and a count (gateway/ops/eventfold.py).
        security.addFilter(FoldEvents(security.handle))
        root.addHandler(security)
    root.setLevel(settings.level)
    level = logging.getLevelName(settings.level)
    gateway_level = min(level, logging.INFO) if isinstance(level, int) else logging.INFO
    logging.getLogger("gateway").setLevel(gateway_level)
    # mitmproxy logs every client connect/disconnect at INFO; that is noise at a warehouse's scale.
    logging.getLogger("mitmproxy").setLevel(logging.WARNING)
