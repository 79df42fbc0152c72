"""Where ACME material lives: ``state_dir/acme/``.

    account-<directory hash>.key / .json   the account (key owner-only), reused across restarts
    bases/<base id>/certificate.pem        chain then key in ONE file (owner-only): one atomic
                                           rename swaps both, so a watcher never sees a new
                                           certificate next to an old key
    bases/<base id>/status.json            what `gateway cert acme status` shows
    challenges/http-01/<token>             key authorizations answered on acme.challenge_listen
    challenges/tls-alpn-01/<name>.pem      acme-tls/1 certificates answered on the base's port

Files, not memory: every gateway process of the machine (and `gateway cert acme renew`) sees
the challenges and the certificate another one wrote.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.certs.install import PRIVATE_MODE
from gateway.utils.files import atomic_write

FOLDER = "acme"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def acme_folder(state_dir: Path) -> Path:
    return state_dir / FOLDER


def _safe(text: str) -> str:
    cleaned = _SAFE.sub("_", text)
    return cleaned if cleaned == text else f"{cleaned}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def account_files(state_dir: Path, directory: str) -> tuple[Path, Path]:
    # One account per directory: switching from staging to production must not reuse the key's
    # registration at the wrong CA.
    tag = hashlib.sha256(directory.encode()).hexdigest()[:12]
    folder = acme_folder(state_dir)
    return folder / f"account-{tag}.key", folder / f"account-{tag}.json"


def base_folder(state_dir: Path, base_id: str) -> Path:
    return acme_folder(state_dir) / "bases" / _safe(base_id)


def certificate_file(state_dir: Path, base_id: str) -> Path:
    return base_folder(state_dir, base_id) / "certificate.pem"


def http_challenge_folder(state_dir: Path) -> Path:
    return acme_folder(state_dir) / "challenges" / "http-01"


def alpn_challenge_file(state_dir: Path, name: str) -> Path:
    return acme_folder(state_dir) / "challenges" / "tls-alpn-01" / f"{_safe(name)}.pem"


# Keys of the values shared through the store with the other machines.
def shared_http_key(token: str) -> str:
    return f"acme:http-01:{token}"


def shared_alpn_key(name: str) -> str:
    return f"acme:tls-alpn-01:{name}"


def shared_certificate_key(base_id: str) -> str:
    return f"acme:certificate:{base_id}"


# Challenge answers outlive no order: a CA validates within minutes.
CHALLENGE_TTL = 900.0


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for folder in (path.parent, acme_folder_of(path)):
        try:
            folder.chmod(0o700)
        except OSError:
            pass
    atomic_write(path, data, PRIVATE_MODE)


def acme_folder_of(path: Path) -> Path:
    for parent in path.parents:
        if parent.name == FOLDER:
            return parent
    return path.parent


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.astimezone(datetime.timezone.utc).isoformat() if moment else None


def _time(text: Any) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text))
    except ValueError:
        return None


@dataclass
class Status:
    """One base's ACME state, kept next to its certificate."""

    names: list[str] = field(default_factory=list)
    issued: bool = False  # False while the placeholder from the local CA serves
    issuer: str = ""
    not_before: datetime.datetime | None = None
    not_after: datetime.datetime | None = None
    next_renewal: datetime.datetime | None = None
    ari_renewal: datetime.datetime | None = None  # the CA's suggestion (ARI), when it gave one
    ari_next_check: datetime.datetime | None = None
    last_error: str = ""
    last_error_at: datetime.datetime | None = None
    failures: int = 0
    next_attempt: datetime.datetime | None = None

    _TIMES = ("not_before", "not_after", "next_renewal", "ari_renewal", "ari_next_check", "last_error_at",
              "next_attempt")

    def to_json(self) -> bytes:
        data = asdict(self)
        for name in self._TIMES:
            data[name] = _iso(data[name])
        return json.dumps(data, indent=2, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Status:
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in cls._TIMES:
            known[name] = _time(known.get(name))
        return cls(**known)


def status_file(state_dir: Path, base_id: str) -> Path:
    return base_folder(state_dir, base_id) / "status.json"


def read_status(state_dir: Path, base_id: str) -> Status:
    try:
        return Status.from_json(status_file(state_dir, base_id).read_bytes())
    except (OSError, ValueError, TypeError):
        return Status()


def write_status(state_dir: Path, base_id: str, status: Status) -> None:
    write_private(status_file(state_dir, base_id), status.to_json())
