"""The SQLite store: one file in the state folder, shared by every gateway process on the machine.

WAL lets readers run while one process writes; ``busy_timeout`` makes a writer wait for the
lock instead of failing. Counters are rows inserted one statement at a time (never read,
incremented and written back), and multi-step changes run under ``BEGIN IMMEDIATE``, which takes
the write lock up front, so two processes cannot interleave a check and its write.
Each thread gets its own connection: sqlite3 connections must not be shared across threads.

``version()`` is the change marker caches rely on: a counter in a small memory-mapped file beside
the database (``gateway.changes``, gateway.store.changes) that every write transaction of every
process bumps after its commit — one integer read per request instead of a ``PRAGMA
data_version`` read transaction; plus a count of this object's write transactions, bumped after
each commit. A change made with another program (the sqlite3 shell) is not seen by a running
gateway's caches: change state through the gateway's commands or console.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import random
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from gateway.store.changes import ChangeCounter
from gateway.store.base import (
    Credential, DuplicateError, Group, NotFoundError, Place, Principal, Reservation, SessionRecord, StoreError,
    StoreUnavailable, User,
)

DB_NAME = "gateway.db"
CHANGES_SUFFIX = ".changes"  # the shared change counter: gateway.db → gateway.changes
# Long enough to ride out another process's short write; short enough that a stuck lock turns
# into a quick 503 instead of a hung request.
BUSY_TIMEOUT_MS = 5000
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    offline INTEGER NOT NULL DEFAULT 0,
    doc_types TEXT NOT NULL,
    on_login TEXT NOT NULL DEFAULT '',
    on_logout TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    group_id TEXT NOT NULL REFERENCES groups(id),
    description TEXT NOT NULL DEFAULT '',
    warehouses TEXT NOT NULL DEFAULT '[]',
    generation INTEGER NOT NULL DEFAULT 1
);
-- Passwords and barcodes share one key space, so "no barcode equals a password" is the same
-- unique index as "no two users share a password".
CREATE TABLE IF NOT EXISTS credentials (
    key TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('password', 'barcode')),
    hash TEXT NOT NULL,
    UNIQUE (user_id, kind)
);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_key_at ON failures (key, at);
CREATE INDEX IF NOT EXISTS failures_at ON failures (at);
-- Login attempts being checked right now: each holds a place in the windows of its keys until it
-- succeeds (the row goes) or fails (the row becomes a failure). ``expires`` is a lease, so a
-- process that dies mid-check does not hold a place for ever.
CREATE TABLE IF NOT EXISTS held (holder TEXT NOT NULL, key TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS held_key ON held (key, expires);
CREATE INDEX IF NOT EXISTS held_holder ON held (holder);
-- One-off markers ("spray event already raised in this window"), each until a time.
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    expires REAL NOT NULL
);
-- Short leases (one gateway of several does a job) and small shared values (ACME answers).
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS shared_values (name TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL);
"""

T = TypeVar("T")


# What a full, read-only or failing disk (or another process holding the lock too long) looks
# like through sqlite3: the machine's fault, which passes, not the request's.
_MACHINE_FAULTS = (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN,
                   sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
# Of those, the ones after which the open files may be spent: a disk the kernel remounted
# read-only after an error keeps refusing through them even once it is mounted writable again
# (after fsck), so the store is closed (its files released, so the disk can be unmounted) and
# opened afresh. A full disk or a held lock pass through the same connections.
_SPENT_FILES = (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN)


# Free space a store that ran out of it needs before it is taken for back: a login writes a few
# pages, and a disk freed by a few KiB would be full again at the next one.
ROOM_TO_WRITE = 1024 * 1024


def _store_errors(method: Callable[..., T]) -> Callable[..., T]:
    """Every sqlite3 failure leaves as StoreError, so callers have one thing to fail closed on."""
    @functools.wraps(method)
    def wrapper(self: SqliteStore, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except sqlite3.Error as e:
            code = getattr(e, "sqlite_errorcode", 0) & 0xFF
            if code in _MACHINE_FAULTS:
                raise StoreUnavailable(f"the state database {self.path} cannot be written in {self.path.parent}: "
                                       f"{e}{_disk_cause(self.path.parent)} — free space on that disk or make it "
                                       "writable again", reopen=code in _SPENT_FILES) from e
            if self._closed:
                # A call that was under way when the store was closed to be opened again.
                raise StoreUnavailable(f"the state database {self.path} is being opened again: {e}") from e
            raise StoreError(f"state database error: {e}") from e
    return wrapper


def _disk_cause(folder: Path) -> str:
    """What the disk says, where sqlite3's words ("disk I/O error") do not name the cause: an
    empty file created and removed in the folder (a read-only file system refuses it by name),
    then the free space. Only on the way to an error, never on a request that succeeds."""
    probe = folder / f".write-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return ""
    except OSError as e:
        return f" ({folder}: {e.strerror})"
    try:
        os.unlink(probe)
    except OSError:
        pass
    statvfs = getattr(os, "statvfs", None)  # POSIX; elsewhere sqlite3's words are all there is
    try:
        if statvfs is not None and statvfs(folder).f_bavail == 0:
            return f" ({folder}: the disk is full)"
    except OSError:
        pass
    return ""


def _create_private(path: Path) -> None:
    """Create the database owner-only before SQLite does; its -wal and -shm files copy the mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _damaged(path: Path, error: BaseException) -> StoreError | None:
    """The refusal of a file that is not (or no longer) an SQLite database, or None for other errors.
    Never started over silently: the file holds every user, group and ban."""
    if (getattr(error, "sqlite_errorcode", 0) & 0xFF) not in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return None
    return StoreError(
        f"{path} is damaged ({error}); the gateway will not use it or make a new one in its place. Stop the "
        f"gateway, copy the last backup of gateway.db over {path} (and delete {path.name}-wal and "
        f"{path.name}-shm beside it), then start again; with no backup, move the file aside and start over "
        "with --init")


def _name_key(name: str) -> str:
    return name.strip().casefold()


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode = WAL``, waiting as a write would. On a new database the switch needs
    the file to itself, and SQLite may answer "locked" at once instead of calling the busy
    handler: worker processes opening a fresh state folder together must wait, not fail."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


RATES_FILE = "rates.db"


class SqliteStore:
    def __init__(self, path: Path, create: bool = True) -> None:
        """``create``: False to open only a database that exists (the running gateway opening
        its store again after a disk fault must never start an empty one in its place)."""
        self.path = Path(path)
        self._closed = False
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._watch_lock = threading.Lock()
        self._writes = 0
        self._changes: ChangeCounter | None = None
        # Only the first connection may create the database. A later one (a new thread of a
        # running gateway) opening a file that was deleted meanwhile would otherwise start an
        # empty store silently, and the state check would see a "replaced" file, not a lost one.
        self._created = not create
        try:
            self._init_schema()
        except BaseException:
            self.close()  # no file left open on a disk that failed
            raise
        self._created = True

    # --- connections and transactions ---

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreUnavailable(f"the state database {self.path} is being opened again")
            if self._created and not self.path.exists():
                raise StoreUnavailable(f"the state database {self.path} no longer exists; restore it from a "
                                       "backup (docs: upgrading and backing up) and restart the gateway")
            try:
                if not self._created:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    _create_private(self.path)
                # mode=rw: a later connection never creates the file (see _created).
                target = f"{self.path.resolve().as_uri()}?mode=rw" if self._created else str(self.path)
                conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False, uri=self._created)
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA foreign_keys = ON")
                # FULL: every commit is on the disk before it returns. With NORMAL the WAL is synced
                # only at checkpoints, and a disk the kernel turns read-only after an error (or a
                # power cut) loses the commits still in the page cache — the last ~30 s of users
                # added and failed logins counted (tests/e2e/test_state_disk.py showed it). Each
                # write here is an account change or a login attempt, which costs argon2 anyway.
                conn.execute("PRAGMA synchronous = FULL")
            except (sqlite3.Error, OSError) as e:
                damaged = _damaged(self.path, e)
                if damaged is not None:
                    raise damaged from e
                raise StoreError(f"cannot open the state database {self.path}: {e}") from e
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def atomically(self) -> Iterator[None]:
        """Every store call of this thread inside the block is one write transaction: all or nothing,
        and no other process writes in between (an import of a users file)."""
        with self._write():
            self._local.joined = True
            try:
                yield
            finally:
                self._local.joined = False

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        if getattr(self._local, "joined", False):
            yield conn  # part of the transaction atomically() holds
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # A COMMIT that failed (a full disk) may leave the transaction open: without the
                # rollback every later write of this thread would fail with "within a transaction".
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
        finally:
            # After the commit, never before: a reader that saw the old count must not have
            # read the old data under the new one.
            with self._watch_lock:
                self._writes += 1
            self._change_counter().bump()

    def _change_counter(self) -> ChangeCounter:
        counter = self._changes
        if counter is None:
            with self._watch_lock:
                if self._closed:
                    raise StoreUnavailable(f"the state database {self.path} is being opened again")
                if self._changes is None:
                    try:
                        self._changes = ChangeCounter(self.path.with_suffix(CHANGES_SUFFIX))
                    except OSError as e:
                        if e.errno in (errno.EROFS, errno.ENOSPC, errno.EIO):
                            raise StoreUnavailable(f"cannot open the change counter beside {self.path}: {e} — free "
                                                   "space on that disk or make it writable again", reopen=True) from e
                        raise StoreError(f"cannot open the change counter beside {self.path}: {e}") from e
                    except ValueError as e:
                        raise StoreError(f"cannot open the change counter beside {self.path}: {e}") from e
                counter = self._changes
        return counter

    def version(self) -> int:
        # Read on every request of a Basic-auth base: the common case is two attribute reads and
        # an integer read from shared memory, without the error-translating wrapper (nothing
        # here touches sqlite3).
        counter = self._changes
        if counter is not None:
            try:
                return (self._writes << 64) | counter.value()
            except ValueError:
                pass  # closed under us: the full path says so
        return self._version()

    @_store_errors
    def _version(self) -> int:
        try:
            return (self._writes << 64) | self._change_counter().value()
        except ValueError as e:  # its map closed under a call in flight: the store is being reopened
            raise StoreUnavailable(f"the state database {self.path} is being opened again: {e}") from e

    @_store_errors
    def _init_schema(self) -> None:
        conn = self._conn()
        try:
            mode = _switch_to_wal(conn)
        except sqlite3.DatabaseError as e:
            raise _damaged(self.path, e) or e
        if str(mode).lower() != "wal":
            raise StoreError(f"the state database {self.path} cannot use WAL mode (got {mode}); "
                             "put the state folder on a local disk")
        with self._write() as c:
            # executescript would commit the open transaction first; statements run one by one.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            # Failure rows name who failed (the address), for the spray event's address count.
            if "who" not in {row[1] for row in c.execute("PRAGMA table_info(failures)")}:
                c.execute("ALTER TABLE failures ADD COLUMN who TEXT NOT NULL DEFAULT ''")

    def room_problem(self) -> str:
        """Why a write that failed for want of space would fail again, or "". A write that fits
        in pages SQLite already holds can succeed on a disk with no byte free; it proves nothing,
        and taking the store for back on it would turn one outage into one per login."""
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError as e:
            return f"{self.path.parent}: {e.strerror}"
        if free < ROOM_TO_WRITE:
            return (f"the state database {self.path} cannot be written in {self.path.parent}: "
                    f"{free} bytes free — free space on that disk")
        return ""

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
        with self._watch_lock:
            if self._changes is not None:
                self._changes.close()
                self._changes = None

    # --- groups ---

    @staticmethod
    def _group(row: sqlite3.Row | tuple[Any, ...]) -> Group:
        gid, name, role, offline, doc_types, on_login, on_logout = row
        return Group(id=gid, name=name, role=role, offline=bool(offline),
                     doc_types=tuple(json.loads(doc_types)), on_login=on_login, on_logout=on_logout)

    _GROUP_COLS = "id, name, role, offline, doc_types, on_login, on_logout"

    @staticmethod
    def _next_id(c: sqlite3.Connection, table: str) -> str:
        # Called inside the write transaction that inserts, no other process can take the number meanwhile.
        row = c.execute(f"SELECT MAX(CAST(id AS INTEGER)) FROM {table} "
                        "WHERE id != '' AND id NOT GLOB '*[^0-9]*'").fetchone()
        return str((row[0] or 0) + 1)

    @_store_errors
    def put_group(self, group: Group, *, replace: bool = False) -> Group:
        """Insert (or with ``replace``, update) a group; an empty id gets the next free number."""
        with self._write() as c:
            if not group.id:
                group = dataclasses.replace(group, id=self._next_id(c, "groups"))
            clash = c.execute("SELECT id FROM groups WHERE name_key = ? AND id != ?",
                              (_name_key(group.name), group.id)).fetchone()
            if clash:
                raise DuplicateError(f"a group named {group.name!r} already exists (id {clash[0]})")
            exists = c.execute("SELECT 1 FROM groups WHERE id = ?", (group.id,)).fetchone()
            if exists and not replace:
                raise DuplicateError(f"a group with id {group.id!r} already exists")
            c.execute(
                "INSERT INTO groups (id, name, name_key, role, offline, doc_types, on_login, on_logout) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                "name_key = excluded.name_key, role = excluded.role, offline = excluded.offline, "
                "doc_types = excluded.doc_types, on_login = excluded.on_login, on_logout = excluded.on_logout",
                (group.id, group.name, _name_key(group.name), group.role, int(group.offline),
                 json.dumps(list(group.doc_types), ensure_ascii=False), group.on_login, group.on_logout))
        return group

    @_store_errors
    def get_group(self, group_id: str) -> Group | None:
        row = self._conn().execute(f"SELECT {self._GROUP_COLS} FROM groups WHERE id = ?", (group_id,)).fetchone()
        return self._group(row) if row else None

    @_store_errors
    def find_group(self, id_or_name: str) -> Group | None:
        row = self._conn().execute(
            f"SELECT {self._GROUP_COLS} FROM groups WHERE id = ? OR name_key = ? ORDER BY id = ? DESC LIMIT 1",
            (id_or_name, _name_key(id_or_name), id_or_name)).fetchone()
        return self._group(row) if row else None

    @_store_errors
    def list_groups(self) -> list[Group]:
        rows = self._conn().execute(f"SELECT {self._GROUP_COLS} FROM groups ORDER BY name_key").fetchall()
        return [self._group(r) for r in rows]

    @_store_errors
    def remove_group(self, group_id: str) -> None:
        with self._write() as c:
            members = c.execute("SELECT COUNT(*) FROM users WHERE group_id = ?", (group_id,)).fetchone()[0]
            if members:
                raise DuplicateError(f"the group still has {members} user(s); move or remove them first")
            if c.execute("DELETE FROM groups WHERE id = ?", (group_id,)).rowcount == 0:
                raise NotFoundError(f"no group with id {group_id!r}")

    # --- users ---

    _USER_COLS = ("u.id, u.name, u.group_id, u.description, u.warehouses, u.generation, "
                  "EXISTS (SELECT 1 FROM credentials k WHERE k.user_id = u.id AND k.kind = 'barcode')")

    @staticmethod
    def _user(row: tuple[Any, ...]) -> User:
        uid, name, group_id, description, warehouses, generation, has_barcode = row
        return User(id=uid, name=name, group_id=group_id, description=description,
                    warehouses=tuple(json.loads(warehouses)), generation=generation,
                    has_barcode=bool(has_barcode))

    @staticmethod
    def _check_user(c: sqlite3.Connection, user: User) -> None:
        clash = c.execute("SELECT id FROM users WHERE name_key = ? AND id != ?",
                          (_name_key(user.name), user.id)).fetchone()
        if clash:
            raise DuplicateError(f"a user named {user.name!r} already exists (id {clash[0]})")
        if not c.execute("SELECT 1 FROM groups WHERE id = ?", (user.group_id,)).fetchone():
            raise NotFoundError(f"no group with id {user.group_id!r}")

    @staticmethod
    def _insert_credential(c: sqlite3.Connection, user_id: str, cred: Credential) -> None:
        owner = c.execute("SELECT user_id, kind FROM credentials WHERE key = ?", (cred.key,)).fetchone()
        if owner is not None:
            # Deliberately not naming the other user: that would hand out their secret.
            raise DuplicateError(f"this {cred.kind} is already in use as a password or barcode; choose another")
        c.execute("INSERT INTO credentials (key, user_id, kind, hash) VALUES (?, ?, ?, ?)",
                  (cred.key, user_id, cred.kind, cred.hash))

    @_store_errors
    def add_user(self, user: User, credentials: tuple[Credential, ...]) -> User:
        """Insert a user with its secrets; an empty id gets the next free number."""
        with self._write() as c:
            if not user.id:
                user = dataclasses.replace(user, id=self._next_id(c, "users"))
            if c.execute("SELECT 1 FROM users WHERE id = ?", (user.id,)).fetchone():
                raise DuplicateError(f"a user with id {user.id!r} already exists")
            self._check_user(c, user)
            c.execute("INSERT INTO users (id, name, name_key, group_id, description, warehouses, generation) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (user.id, user.name, _name_key(user.name), user.group_id, user.description,
                       json.dumps(list(user.warehouses), ensure_ascii=False), user.generation))
            for cred in credentials:
                self._insert_credential(c, user.id, cred)
        return user

    @_store_errors
    def put_user(self, user: User) -> None:
        with self._write() as c:
            self._check_user(c, user)
            c.execute("INSERT INTO users (id, name, name_key, group_id, description, warehouses) "
                      "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                      "name_key = excluded.name_key, group_id = excluded.group_id, "
                      "description = excluded.description, warehouses = excluded.warehouses, "
                      "generation = users.generation + 1",
                      (user.id, user.name, _name_key(user.name), user.group_id, user.description,
                       json.dumps(list(user.warehouses), ensure_ascii=False)))

    @_store_errors
    def get_user(self, user_id: str) -> User | None:
        row = self._conn().execute(f"SELECT {self._USER_COLS} FROM users u WHERE u.id = ?", (user_id,)).fetchone()
        return self._user(row) if row else None

    @_store_errors
    def find_user(self, id_or_name: str) -> User | None:
        row = self._conn().execute(
            f"SELECT {self._USER_COLS} FROM users u WHERE u.id = ? OR u.name_key = ? ORDER BY u.id = ? DESC LIMIT 1",
            (id_or_name, _name_key(id_or_name), id_or_name)).fetchone()
        return self._user(row) if row else None

    @_store_errors
    def list_users(self) -> list[User]:
        rows = self._conn().execute(f"SELECT {self._USER_COLS} FROM users u ORDER BY u.name_key").fetchall()
        return [self._user(r) for r in rows]

    @_store_errors
    def remove_user(self, user_id: str) -> None:
        with self._write() as c:
            # Sessions and credentials go with the user (ON DELETE CASCADE); a cache entry fails its
            # generation check because the row is gone.
            if c.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount == 0:
                raise NotFoundError(f"no user with id {user_id!r}")

    @_store_errors
    def set_credential(self, user_id: str, credential: Credential | None, kind: str) -> None:
        with self._write() as c:
            if not c.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone():
                raise NotFoundError(f"no user with id {user_id!r}")
            c.execute("DELETE FROM credentials WHERE user_id = ? AND kind = ?", (user_id, kind))
            if credential is not None:
                self._insert_credential(c, user_id, credential)
            c.execute("UPDATE users SET generation = generation + 1 WHERE id = ?", (user_id,))
            c.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))

    @_store_errors
    def credentials_of(self, user_id: str) -> tuple[Credential, ...]:
        rows = self._conn().execute("SELECT key, kind, hash, user_id FROM credentials WHERE user_id = ? "
                                    "ORDER BY kind DESC", (user_id,)).fetchall()
        return tuple(Credential(*r) for r in rows)

    @_store_errors
    def find_credential(self, key: str) -> Credential | None:
        row = self._conn().execute("SELECT key, kind, hash, user_id FROM credentials WHERE key = ?", (key,)).fetchone()
        return Credential(*row) if row else None

    @_store_errors
    def principal(self, user_id: str) -> Principal | None:
        conn = self._conn()
        # One read transaction, so user and group are from the same moment.
        conn.execute("BEGIN")
        try:
            urow = conn.execute(f"SELECT {self._USER_COLS} FROM users u WHERE u.id = ?", (user_id,)).fetchone()
            grow = (conn.execute(f"SELECT {self._GROUP_COLS} FROM groups WHERE id = ?", (urow[2],)).fetchone()
                    if urow else None)
        finally:
            conn.execute("COMMIT")
        if not urow or not grow:
            return None
        return Principal(self._user(urow), self._group(grow))

    @_store_errors
    def next_id(self, table: str) -> str:
        if table not in ("users", "groups"):
            raise ValueError(table)
        return self._next_id(self._conn(), table)

    # --- failed logins ---

    @_store_errors
    def add_failure(self, key: str, at: float, forget_before: float, who: str = "") -> None:
        with self._write() as c:
            c.execute("INSERT INTO failures (key, at, who) VALUES (?, ?, ?)", (key, at, who))
            # Old events are useless to every window; pruning here keeps the table small.
            c.execute("DELETE FROM failures WHERE at < ?", (forget_before,))

    @_store_errors
    def failure_times(self, key: str, since: float) -> list[float]:
        rows = self._conn().execute("SELECT at FROM failures WHERE key = ? AND at >= ? ORDER BY at",
                                    (key, since)).fetchall()
        return [r[0] for r in rows]

    @_store_errors
    def failure_keys(self, since: float) -> dict[str, list[float]]:
        result: dict[str, list[float]] = {}
        for key, at in self._conn().execute("SELECT key, at FROM failures WHERE at >= ? ORDER BY key, at", (since,)):
            result.setdefault(key, []).append(at)
        return result

    @_store_errors
    def clear_failures(self, key: str) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM failures WHERE key = ?", (key,)).rowcount

    # --- login attempts being checked (see gateway.auth.throttle) ---

    @_store_errors
    def reserve(self, places: Sequence[Place], holder: str, now: float, lease: float) -> Reservation:
        with self._write() as c:
            c.execute("DELETE FROM held WHERE expires < ?", (now,))
            waiting: Reservation | None = None
            for place in places:
                if place.limit <= 0:
                    continue  # counted only: never refuses, never waits
                times = [r[0] for r in c.execute("SELECT at FROM failures WHERE key = ? AND at > ? ORDER BY at",
                                                 (place.key, now - place.window))]
                if len(times) >= place.limit:
                    return Reservation.refused(place, len(times), times[len(times) - place.limit], now)
                held = c.execute("SELECT COUNT(*) FROM held WHERE key = ?", (place.key,)).fetchone()[0]
                if waiting is None and len(times) + held >= place.limit:
                    holders = c.execute("SELECT group_concat(holder, ' ') FROM (SELECT holder FROM held "
                                        "WHERE key = ? ORDER BY holder)", (place.key,)).fetchone()[0]
                    waiting = Reservation("wait", place.key, len(times), holders=holders or "")
            if waiting is not None:
                return waiting
            c.executemany("INSERT INTO held (holder, key, expires) VALUES (?, ?, ?)",
                          [(holder, place.key, now + lease) for place in places])
            return Reservation("reserved")

    @_store_errors
    def release(self, holder: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM held WHERE holder = ?", (holder,))

    @_store_errors
    def settle_failure(self, holder: str, rows: Sequence[tuple[str, str]], at: float, forget_before: float) -> None:
        with self._write() as c:
            c.execute("DELETE FROM held WHERE holder = ?", (holder,))
            c.executemany("INSERT INTO failures (key, at, who) VALUES (?, ?, ?)",
                          [(key, at, who) for key, who in rows])
            c.execute("DELETE FROM failures WHERE at < ?", (forget_before,))

    @_store_errors
    def failure_summary(self, key: str, since: float) -> tuple[int, int, int]:
        row = self._conn().execute("SELECT COUNT(*), COUNT(DISTINCT who), (SELECT COUNT(*) FROM held WHERE key = ?) "
                                   "FROM failures WHERE key = ? AND at > ?", (key, key, since)).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    @_store_errors
    def claim(self, key: str, now: float, until: float) -> bool:
        with self._write() as c:
            c.execute("DELETE FROM claims WHERE until <= ?", (now,))
            return c.execute("INSERT OR IGNORE INTO claims (key, until) VALUES (?, ?)", (key, until)).rowcount == 1

    # --- request rates ---

    def _rates(self) -> sqlite3.Connection:
        """The request-rate buckets, in a file of their own (rates.db beside the store): a write
        per request there must not look like a change of users to the caches that watch this
        database's version, and losing it in a crash loses nothing worth an fsync."""
        conn: sqlite3.Connection | None = getattr(self._local, "rates", None)
        if conn is None:
            if self._closed:
                raise StoreUnavailable(f"the state database {self.path} is being opened again")
            path = self.path.with_name(RATES_FILE)
            _create_private(path)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _switch_to_wal(conn)
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, excess REAL NOT NULL, "
                         "at REAL NOT NULL)")
            # Strikes per key and whole second (one row per flush, not per strike) and the short
            # bans they lead to: written by the hundred under attack, so here, not in the store's file.
            conn.execute("CREATE TABLE IF NOT EXISTS strikes (key TEXT NOT NULL, second INTEGER NOT NULL, "
                         "n INTEGER NOT NULL, PRIMARY KEY (key, second))")
            conn.execute("CREATE TABLE IF NOT EXISTS short_bans (key TEXT PRIMARY KEY, until REAL NOT NULL)")
            self._local.rates = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @_store_errors
    def take_request(self, key: str, now: float, rate: float, burst: int) -> float:
        c = self._rates()
        c.execute("BEGIN IMMEDIATE")
        try:
            row = c.execute("SELECT excess, at FROM buckets WHERE key = ?", (key,)).fetchone()
            excess = 0.0 if row is None else max(0.0, row[0] - rate * max(0.0, now - row[1]) + 1.0)
            if excess > burst:
                c.execute("ROLLBACK")
                return (excess - burst) / rate
            c.execute("INSERT OR REPLACE INTO buckets (key, excess, at) VALUES (?, ?, ?)", (key, excess, now))
            # Buckets long drained are forgotten now and then, so the table stays the size of the traffic.
            if random.random() < 1 / 512:
                c.execute("DELETE FROM buckets WHERE at < ?", (now - 3600,))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return 0.0

    # --- short bans ---

    @_store_errors
    def add_strikes(self, counts: Sequence[tuple[str, int]], now: float, window: float, limit: int,
                    ban: float) -> tuple[list[str], dict[str, float]]:
        if not counts:
            return [], self.short_bans(now)
        c = self._rates()
        banned: list[str] = []
        c.execute("BEGIN IMMEDIATE")
        try:
            # A whole second counts while any part of it lies in the window: never fewer strikes than happened.
            c.execute("DELETE FROM strikes WHERE second <= ?", (now - window - 1,))
            c.execute("DELETE FROM short_bans WHERE until <= ?", (now,))
            for key, n in counts:
                if c.execute("SELECT 1 FROM short_bans WHERE key = ?", (key,)).fetchone():
                    continue
                c.execute("INSERT INTO strikes (key, second, n) VALUES (?, ?, ?) "
                          "ON CONFLICT (key, second) DO UPDATE SET n = n + excluded.n", (key, int(now), n))
                total = c.execute("SELECT SUM(n) FROM strikes WHERE key = ?", (key,)).fetchone()[0]
                if total > limit:
                    c.execute("INSERT OR REPLACE INTO short_bans (key, until) VALUES (?, ?)", (key, now + ban))
                    c.execute("DELETE FROM strikes WHERE key = ?", (key,))
                    banned.append(key)
            bans = dict(c.execute("SELECT key, until FROM short_bans").fetchall())
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return banned, bans

    @_store_errors
    def short_bans(self, now: float) -> dict[str, float]:
        return dict(self._rates().execute("SELECT key, until FROM short_bans WHERE until > ?", (now,)).fetchall())

    @_store_errors
    def lift_short_ban(self, key: str) -> int:
        c = self._rates()
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("DELETE FROM strikes WHERE key = ?", (key,))
            lifted = c.execute("DELETE FROM short_bans WHERE key = ? AND until > ?", (key, time.time())).rowcount
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return lifted

    # --- gateway sessions ---

    @_store_errors
    def create_session(self, token_hash: str, record: SessionRecord) -> None:
        with self._write() as c:
            c.execute("INSERT INTO sessions (token_hash, user_id, generation, expires) VALUES (?, ?, ?, ?)",
                      (token_hash, record.user_id, record.generation, record.expires))

    @_store_errors
    def get_session(self, token_hash: str) -> SessionRecord | None:
        row = self._conn().execute("SELECT user_id, generation, expires FROM sessions WHERE token_hash = ?",
                                   (token_hash,)).fetchone()
        return SessionRecord(*row) if row else None

    @_store_errors
    def delete_session(self, token_hash: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    @_store_errors
    def purge_sessions(self, now: float) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM sessions WHERE expires < ?", (now,)).rowcount

    # --- short leases ---

    @_store_errors
    def try_lock(self, name: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._write() as c:
            row = c.execute("SELECT owner, expires FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            c.execute("INSERT OR REPLACE INTO leases (name, owner, expires) VALUES (?, ?, ?)",
                      (name, owner, now + ttl))
            return True

    @_store_errors
    def unlock(self, name: str, owner: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    # --- small shared values ---

    @_store_errors
    def put_shared(self, name: str, value: str, ttl: float | None = None) -> None:
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO shared_values (name, value, expires) VALUES (?, ?, ?)",
                      (name, value, time.time() + ttl if ttl is not None else None))

    @_store_errors
    def get_shared(self, name: str) -> str | None:
        row = self._conn().execute("SELECT value, expires FROM shared_values WHERE name = ?", (name,)).fetchone()
        if row is None or (row[1] is not None and row[1] < time.time()):
            return None
        return str(row[0])

    @_store_errors
    def delete_shared(self, name: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM shared_values WHERE name = ?", (name,))
