"""What the gateway keeps between requests and processes, behind one interface.

The SQLite store serves one machine (several gateway processes sharing a state folder); a Redis
store can implement the same protocol for several machines. Every method is one short atomic
operation, so no caller ever does read-modify-write across calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

ROLES = ("mobile", "external", "admin")
CREDENTIAL_KINDS = ("password", "barcode")


class StoreError(Exception):
    """The store could not answer (locked, corrupt, missing). Callers deny: fail closed."""


class StoreUnavailable(StoreError):
    """The store did not answer or could not write (Redis down, disk full or read-only): a fault
    of the machine, not of the request. It passes; the caller answers 503 and tries again later.

    ``reopen``: the open files themselves are spent (a disk the kernel turned read-only after an
    error): the store must be closed and opened again once the disk is back, not merely retried."""

    def __init__(self, message: str, *, reopen: bool = False) -> None:
        super().__init__(message)
        self.reopen = reopen


class DuplicateError(StoreError):
    """A uniqueness rule would break; ``what`` names it for the person at the keyboard."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class NotFoundError(StoreError):
    pass


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    role: str
    doc_types: tuple[str, ...]
    offline: bool = False
    on_login: str = ""
    on_logout: str = ""


@dataclass(frozen=True)
class User:
    id: str
    name: str
    group_id: str
    description: str = ""
    warehouses: tuple[str, ...] = ()
    # Bumped on every credential change and removal: caches and sessions compare it.
    generation: int = 1
    has_barcode: bool = False


@dataclass(frozen=True)
class Credential:
    """One stored secret: its keyed hash (the unique index) and its argon2id hash."""

    key: str
    kind: str  # "password" or "barcode"
    hash: str
    user_id: str = ""


@dataclass(frozen=True)
class Principal:
    """A user with its group, as authentication hands it on."""

    user: User
    group: Group


@dataclass(frozen=True)
class SessionRecord:
    user_id: str
    generation: int
    expires: float


@dataclass(frozen=True)
class Place:
    """A window an attempt must find room in: at most ``limit`` failures of ``key`` per ``window`` s.
    ``limit`` 0: the attempt is only counted there (a base's spray budget), never refused or held up."""

    key: str
    limit: int
    window: float


@dataclass(frozen=True)
class Reservation:
    """What ``Store.reserve`` found: ``reserved`` (the places are held), ``wait`` (the places left
    are all held by attempts still being checked) or ``refused`` (recorded failures fill a window)."""

    outcome: str
    key: str = ""  # the key that made it wait or refused it
    failures: int = 0
    retry_after: float = 0.0
    holders: str = ""  # "wait": who holds the key's places now; a change means the queue moves

    @classmethod
    def refused(cls, place: Place, failures: int, unlocking: float, now: float) -> Reservation:
        """``unlocking``: the time of the failure whose leaving the window lets attempts in again
        (the ``limit``-th newest of the window's ``failures``)."""
        return cls("refused", place.key, failures, max(unlocking + place.window - now, 0.0))


@runtime_checkable
class Store(Protocol):
    # --- groups ---
    def put_group(self, group: Group, *, replace: bool = False) -> Group:
        """Insert (or update with ``replace``); an empty ``id`` is allocated in the same atomic step."""
        ...
    def get_group(self, group_id: str) -> Group | None: ...
    def find_group(self, id_or_name: str) -> Group | None: ...
    def list_groups(self) -> list[Group]: ...
    def remove_group(self, group_id: str) -> None: ...

    # --- users ---
    def add_user(self, user: User, credentials: tuple[Credential, ...]) -> User:
        """Insert; an empty ``user.id`` is allocated in the same atomic step. Returns the stored user."""
        ...
    def put_user(self, user: User) -> None:
        """Import: insert or replace the user's profile, keeping its credentials."""
        ...
    def get_user(self, user_id: str) -> User | None: ...
    def find_user(self, id_or_name: str) -> User | None: ...
    def list_users(self) -> list[User]: ...
    def remove_user(self, user_id: str) -> None: ...
    def set_credential(self, user_id: str, credential: Credential | None, kind: str) -> None:
        """Replace (or with None, remove) one secret of a user; bumps its generation."""
        ...
    def credentials_of(self, user_id: str) -> tuple[Credential, ...]: ...
    def find_credential(self, key: str) -> Credential | None: ...
    def principal(self, user_id: str) -> Principal | None: ...
    def next_id(self, table: str) -> str: ...

    # --- failed logins ---
    def add_failure(self, key: str, at: float, forget_before: float, who: str = "") -> None: ...
    def failure_times(self, key: str, since: float) -> list[float]: ...
    def failure_keys(self, since: float) -> dict[str, list[float]]: ...
    def clear_failures(self, key: str) -> int: ...

    # --- login attempts being checked: one atomic step each (see gateway.auth.throttle) ---
    def reserve(self, places: Sequence[Place], holder: str, now: float, lease: float) -> Reservation:
        """Hold a place in every window for ``holder`` (until ``now + lease``), or say why not."""
        ...
    def release(self, holder: str) -> None:
        """The attempt succeeded: its places are free again."""
        ...
    def settle_failure(self, holder: str, rows: Sequence[tuple[str, str]], at: float, forget_before: float) -> None:
        """The attempt failed: its places become failure rows (key, who), in one step."""
        ...
    def failure_summary(self, key: str, since: float) -> tuple[int, int, int]:
        """(failures of ``key`` after ``since``, distinct ``who`` among them, attempts holding a
        place in ``key`` now — on every process and machine)."""
        ...
    def claim(self, key: str, now: float, until: float) -> bool:
        """True for the first caller (any process, any machine) until ``until``; False for the rest."""
        ...

    # --- request rates (gateway/traffic/ratelimit.py) ---
    def take_request(self, key: str, now: float, rate: float, burst: int) -> float:
        """One request into ``key``'s leaky bucket, atomically: 0.0 when it fits, else the seconds
        until one would (the refused request is not counted)."""
        ...

    # --- short bans of an address (HTTP/2 stream resets across workers and machines) ---
    def add_strikes(self, counts: Sequence[tuple[str, int]], now: float, window: float, limit: int,
                    ban: float) -> tuple[list[str], dict[str, float]]:
        """Add each key's strikes at ``now``, all in one atomic step; a key with more than ``limit``
        strikes within ``window`` s is banned until ``now + ban`` and its strikes are forgotten.
        Returns (the keys this call banned, every ban in force: key → until). Empty ``counts``
        only reads. Kept apart from the change marker (``version``): counting never empties caches."""
        ...
    def short_bans(self, now: float) -> dict[str, float]:
        """Every short ban in force: key → until."""
        ...
    def lift_short_ban(self, key: str) -> int:
        """End a key's short ban and forget its strikes; 1 if it was banned, else 0."""
        ...

    # --- gateway sessions ---
    def create_session(self, token_hash: str, record: SessionRecord) -> None: ...
    def get_session(self, token_hash: str) -> SessionRecord | None: ...
    def delete_session(self, token_hash: str) -> None: ...
    def purge_sessions(self, now: float) -> int: ...

    # --- change marker ---
    def version(self) -> int:
        """A number that changes whenever anything is written to the store, by any process.

        One cheap read, so caches (the success cache, the throttle's memo) stay valid while it
        holds still and re-read what they keep as soon as it moves. Read it *before* the data it
        guards: a write that lands in between then shows up as a moved version next time.
        Equal values mean "nothing written in between"; the values themselves mean nothing.
        """
        ...

    def close(self) -> None: ...

    # --- short leases (one gateway of several does a job, e.g. ordering a certificate) ---
    def try_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lease ``name`` for ``ttl`` seconds unless another owner holds a live one;
        the same owner taking it again extends it. True when ``owner`` now holds it."""
        ...

    def unlock(self, name: str, owner: str) -> None:
        """Give the lease back (only when ``owner`` still holds it)."""
        ...

    # --- small shared values (e.g. ACME challenge answers and certificates for every machine) ---
    def put_shared(self, name: str, value: str, ttl: float | None = None) -> None:
        """Store ``value`` under ``name`` (replacing it), for ``ttl`` seconds or for good."""
        ...

    def get_shared(self, name: str) -> str | None: ...

    def delete_shared(self, name: str) -> None: ...
