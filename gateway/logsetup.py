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
import sys
from datetime import datetime, timezone

from gateway.config import LogSettings

ACCESS_LOGGER = "gateway.access"

# Attributes every LogRecord has; anything else on a record came from extra=.
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", "taskName"}


def structured_fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
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

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.name == ACCESS_LOGGER:
            return line
        fields = {k: v for k, v in structured_fields(record).items() if k != "client" or v}
        if fields and "event" in fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return line


def configure_logging(settings: LogSettings) -> None:
    handler: logging.Handler
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            settings.file, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    handler.setLevel(settings.level)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
    level = logging.getLevelName(settings.level)
    gateway_level = min(level, logging.INFO) if isinstance(level, int) else logging.INFO
    logging.getLogger("gateway").setLevel(gateway_level)
    # mitmproxy logs every client connect/disconnect at INFO; that is noise at a warehouse's scale.
    logging.getLogger("mitmproxy").setLevel(logging.WARNING)
