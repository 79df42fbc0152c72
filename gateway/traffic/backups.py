"""Document backups (the seed's "Делать бэкапы документов"): which requests are backed up, how
the files are named, where they go, and how old day folders are removed.

Layout: ``<base folder>/backups/YYYY-MM-DD/`` (UTC days), one body file and one ``.meta.json``
beside it per request, named ``20261127T134501.123456Z_POST_Docs_Поступление_1a2b3c.json`` so
that sorting by name sorts by time. Pure functions; the clock is passed in.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

from gateway.utils.files import atomic_write, atomic_write_text

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
API_PREFIXES = ("/api/v1/", "/mobilesmarts/api/v1/")
DOCS = "docs"
META_SUFFIX = ".meta.json"
DAY_FORMAT = "%Y-%m-%d"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Characters Windows refuses in file names, and anything that is not printable.
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f\'()]+')
MAX_DESCRIPTION = 80


def is_document_write(method: str, path: str) -> bool:
    """POST/PUT/PATCH to ``/api/v1/Docs...`` or ``/MobileSMARTS/api/v1/Docs...`` (any case, as IIS)."""
    if method.upper() not in WRITE_METHODS:
        return False
    plain = unquote(path.split("?", 1)[0]).lower()
    for prefix in API_PREFIXES:
        if plain.startswith(prefix):
            rest = plain[len(prefix):]
            return rest == DOCS or rest.startswith((DOCS + "/", DOCS + "("))
    return False


def description(path: str) -> str:
    """``/api/v1/Docs/Поступление`` → ``Docs_Поступление``: what the file is about, file-name safe."""
    plain = unquote(path.split("?", 1)[0])
    lowered = plain.lower()
    for prefix in API_PREFIXES:
        if lowered.startswith(prefix):
            plain = plain[len(prefix):]
            break
    text = _UNSAFE.sub("_", plain.replace("/", "_")).strip("_. ")
    text = re.sub(r"_+", "_", text)
    return text[:MAX_DESCRIPTION].rstrip("_. ") or "Docs"


def timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def day_folder(root: Path, moment: datetime.datetime) -> Path:
    return root / moment.astimezone(datetime.timezone.utc).strftime(DAY_FORMAT)


def extension(content_type: str) -> str:
    content_type = content_type.lower()
    if "json" in content_type:
        return ".json"
    if "xml" in content_type:
        return ".xml"
    if content_type.startswith("text/"):
        return ".txt"
    return ".bin"


def backup_name(moment: datetime.datetime, method: str, path: str, content_type: str,
                unique: str | None = None) -> str:
    unique = unique or secrets.token_hex(3)
    return f"{timestamp(moment)}_{method.upper()}_{description(path)}_{unique}{extension(content_type)}"


@dataclass(frozen=True)
class BackupMeta:
    time: str
    base: str
    user: str | None
    method: str
    path: str  # secrets masked
    status: int
    size: int
    content_type: str
    content_encoding: str


def write_backup(folder: Path, name: str, body: bytes | BinaryIO, meta: BackupMeta) -> Path:
    """Write the body and its ``.meta.json``; each appears whole or not at all. Raises OSError."""
    target = folder / name
    atomic_write(target, body)
    atomic_write_text(folder / f"{name}{META_SUFFIX}", json.dumps(asdict(meta), ensure_ascii=False, indent=1))
    return target


def expired_days(root: Path, today: datetime.date, retention_days: int) -> list[Path]:
    """Day folders older than ``retention_days`` (today's folder is day 0 and always kept)."""
    if not root.is_dir():
        return []
    oldest_kept = today - datetime.timedelta(days=retention_days - 1)
    expired = []
    for entry in root.iterdir():
        if not entry.is_dir() or not _DAY.match(entry.name):
            continue  # never touch what the gateway did not write
        try:
            day = datetime.date.fromisoformat(entry.name)
        except ValueError:
            continue
        if day < oldest_kept:
            expired.append(entry)
    return sorted(expired)


def remove_expired(root: Path, today: datetime.date, retention_days: int) -> list[Path]:
    """Remove expired day folders; returns those removed. Raises OSError on the first failure."""
    removed = []
    for folder in expired_days(root, today, retention_days):
        shutil.rmtree(folder)
        removed.append(folder)
    return removed
