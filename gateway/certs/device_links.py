"""One-time enrolment links: the admin creates one for a device name, the terminal opens it
over HTTPS on the enrolment listener, types the code shown on the admin's screen and gets its
PKCS#12 file, whose password is that same code (one thing to type, shown once).

Pending links live in the store (a shared value with a lifetime), so any worker or machine
sharing it serves the link. A link is consumed under a lease before the certificate is issued:
two terminals racing with the right code get one file between them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.certs.device_service import Issued, enrol
from gateway.certs.devices import DEFAULT_DEVICE_DAYS, check_device_name, new_p12_password
from gateway.certs.load import CertError
from gateway.store import Store
from gateway.store.base import DuplicateError
from gateway.store.devices import read_registry

LINK_SECONDS = 15 * 60
LINK_PREFIX = "devices:link:"
CODE_LENGTH = 8
LINK_PATH = "/device/"


@dataclass(frozen=True)
class PendingLink:
    name: str
    user: str
    days: int
    legacy: bool
    code_hash: str
    expires: float


@dataclass(frozen=True)
class NewLink:
    token: str
    code: str
    expires: float
    name: str

    def path(self) -> str:
        return LINK_PATH + self.token


class LinkRefused(Exception):
    """The link is unknown, used or expired (``gone``), or the code is wrong."""

    def __init__(self, message: str, gone: bool) -> None:
        super().__init__(message)
        self.gone = gone


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().lower().encode("utf-8")).hexdigest()


def create_link(store: Store, name: str, *, user: str = "", days: int = DEFAULT_DEVICE_DAYS, legacy: bool = False,
                lifetime: float = LINK_SECONDS) -> NewLink:
    check_device_name(name)
    if days < 1:
        raise CertError(f"--days must be at least 1, got {days}")
    old = read_registry(store).by_name(name)
    if old is not None and not old.revoked:
        raise DuplicateError(f"device {name!r} exists; renew it (gateway device renew {name}) or revoke it first")
    token = secrets.token_urlsafe(24)
    code = new_p12_password()[:CODE_LENGTH]
    expires = time.time() + lifetime
    pending = PendingLink(name, user, days, legacy, _hash(code), expires)
    store.put_shared(LINK_PREFIX + token, json.dumps(asdict(pending)), ttl=lifetime)
    return NewLink(token, code, expires, name)


def link_exists(store: Store, token: str) -> bool:
    return _pending(store, token) is not None


def _pending(store: Store, token: str) -> PendingLink | None:
    if not token or len(token) > 64:
        return None
    raw = store.get_shared(LINK_PREFIX + token)
    if not raw:
        return None
    pending = PendingLink(**json.loads(raw))
    return pending if pending.expires > time.time() else None


def redeem(state_dir: Path, store: Store, token: str, code: str) -> Issued:
    """The device's file for the right code, once. Raises LinkRefused otherwise."""
    owner = uuid.uuid4().hex
    lock = LINK_PREFIX + "lock:" + token[:64]
    if not store.try_lock(lock, owner, 30):
        raise LinkRefused("this link is being used right now", gone=False)
    try:
        pending = _pending(store, token)
        if pending is None:
            raise LinkRefused("this link is unknown, already used or expired; ask for a new one", gone=True)
        if not hmac.compare_digest(_hash(code), pending.code_hash):
            raise LinkRefused("wrong code", gone=False)
        store.delete_shared(LINK_PREFIX + token)  # used: before issuing, so a second try finds nothing
    finally:
        store.unlock(lock, owner)
    issued = enrol(state_dir, store, pending.name, user=pending.user, days=pending.days, legacy=pending.legacy,
                   password=code.strip().lower())
    return issued
