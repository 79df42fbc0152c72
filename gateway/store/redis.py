"""The Redis store: one Redis shared by gateway processes on several machines.

Same semantics as the SQLite store, record for record. Every change that SQLite makes inside a
transaction (a uniqueness check and its insert, a removal and its cascade, a failure row and the
pruning of old ones) is one Lua script here: Redis runs a script atomically, so two machines
cannot interleave a check and its write. A script checks everything before it writes anything,
because Redis does not roll back a script that stops half way.

Keys live under a prefix (``gw:`` by default), so one Redis can serve other things as well:

    {p}group:<id>            hash   a group
    {p}groups                set    group ids
    {p}group-names           hash   case-folded name -> group id (names are unique)
    {p}group-members:<id>    set    user ids in the group
    {p}user:<id>             hash   a user's profile and generation
    {p}users                 set    user ids
    {p}user-names            hash   case-folded name -> user id
    {p}user-creds:<id>       hash   kind ("password"/"barcode") -> credential key
    {p}cred:<key>            hash   one credential: user_id, kind, argon2id hash
    {p}fail:<key>            zset   failed logins of an address or account, scored by time
    {p}fail-keys             zset   keys holding failures, scored by their oldest failure
    {p}held:<key>            zset   login attempts being checked, scored by their lease's end
    {p}claim:<key>           string a one-off marker with a TTL (spray event raised this window)
    {p}strikes:<key>         hash   strikes of a key (HTTP/2 stream resets of an address) per second
    {p}short-bans            zset   keys banned for a short while, scored by the ban's end
    {p}session:<token hash>  hash   a gateway session
    {p}sessions              zset   token hashes scored by expiry (for the purge)
    {p}user-sessions:<id>    set    a user's token hashes (ended with its credentials)
    {p}auth-hmac-fingerprint string fingerprint of the HMAC key every machine must hold (never the key)
    {p}version               string the change marker: every write script INCRs it (see version())

Every script that writes also INCRs ``{p}version`` in the same atomic step, so ``version()`` (one
GET) tells caches on every machine that something changed. Changes made by hand with redis-cli
bypass it: caches then notice them only when their entries expire.

Failure rows and sessions carry TTLs, so an abandoned Redis does not grow without bound even if
no gateway ever prunes it again. Redis Cluster is not supported (scripts touch many keys).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import secrets
import time
from typing import Any, Callable, Sequence, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from gateway.store import redis_lua as lua
from gateway.store.base import (
    Credential, DuplicateError, Group, NotFoundError, Place, Principal, Reservation, SessionRecord, StoreError,
    StoreUnavailable, User,
)

DEFAULT_PREFIX = "gw:"
SCHEMA_VERSION = "1"
# A down Redis must turn into a quick 503, not a hung request: like SQLite's busy timeout.
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
# One quick retry on a broken connection covers a pooled connection that Redis closed (restart,
# idle timeout). Timeouts are not retried: the script may have run, and running it twice would
# turn a created user into "already exists".
RETRY = Retry(ExponentialBackoff(cap=0.1, base=0.01), 1, supported_errors=(redis.ConnectionError,))
# A session outlives its expiry in Redis by this much: the reader decides expiry by its own clock
# (which tests inject), and purge_sessions removes it before that anyway.
SESSION_GRACE = 3600
FINGERPRINT_HEX_DIGITS = 16  # gateway.store.keys.secret_fingerprint
VERSION_SEED_BITS = 62  # leaves 2**62 INCRs before Redis's signed 64-bit counter overflows

T = TypeVar("T")

def _store_errors(method: Callable[..., T]) -> Callable[..., T]:
    """Every Redis failure (refused, timed out, script error) leaves as StoreError: callers fail closed."""
    @functools.wraps(method)
    def wrapper(self: RedisStore, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except redis.AuthenticationError as e:  # a setting to fix, not an outage to wait out
            raise StoreError(f"Redis store {self.where} refused the password ({str(e).rstrip('.')}); "
                             "check the password in store.redis_url") from e
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as e:
            # refused, unreachable, timed out, or a replica that Sentinel has not yet promoted
            reason = str(e).rstrip(".") or type(e).__name__
            raise StoreUnavailable(f"Redis store {self.where} cannot be reached ({reason}); check that Redis "
                                   "runs and that the store section (host, port, password) is right") from e
        except redis.RedisError as e:
            raise StoreError(f"Redis store {self.where} failed: {e}") from e
    return wrapper


def _name_key(name: str) -> str:
    return name.strip().casefold()


def _num(value: float) -> str:
    """A float as Redis and Lua read it back exactly (repr round-trips)."""
    return repr(float(value))


def safe_location(url: str) -> str:
    """The URL without user name or password, for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or parts.path or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unreadable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path if parts.hostname else ''}"


def _member(who: str) -> str:
    """A failure row's zset member: who failed, made unique (two failures may share a time)."""
    return f"{who}|{secrets.token_hex(8)}"


def _fields(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[0::2], flat[1::2]))


def _damaged(decode: Callable[[list[str]], T]) -> Callable[[list[str]], T]:
    """A record someone edited by hand fails as StoreError (fail closed), not as a KeyError."""
    @functools.wraps(decode)
    def wrapper(flat: list[str]) -> T:
        try:
            return decode(flat)
        except (KeyError, ValueError, TypeError) as e:
            raise StoreError(f"the Redis store holds a damaged {decode.__name__.strip('_')} record ({e!r})") from e
    return wrapper


@_damaged
def _group(flat: list[str]) -> Group:
    g = _fields(flat)
    return Group(id=g["id"], name=g["name"], role=g["role"], offline=g["offline"] == "1",
                 doc_types=tuple(json.loads(g["doc_types"])), on_login=g["on_login"], on_logout=g["on_logout"])


@_damaged
def _user(flat: list[str]) -> User:
    u = _fields(flat)
    return User(id=u["id"], name=u["name"], group_id=u["group_id"], description=u["description"],
                warehouses=tuple(json.loads(u["warehouses"])), generation=int(u["generation"]),
                has_barcode=u["has_barcode"] == "1")


def _check(outcome: list[str], what: str, name: str = "") -> None:
    """Turn a script's refusal into the error SQLite's constraints would give, worded the same."""
    code, *detail = outcome
    if code == "ok":
        return
    if code == "dup-name":
        raise DuplicateError(f"a {what} named {name!r} already exists (id {detail[0]})")
    if code == "dup-id":
        raise DuplicateError(f"a {what} with id {name!r} already exists")
    if code == "dup-cred":
        # Deliberately not naming the other user: that would hand out their secret.
        raise DuplicateError(f"this {detail[0]} is already in use as a password or barcode; choose another")
    if code == "dup-kind":
        raise StoreError(f"a user can hold only one {detail[0]}")
    if code == "members":
        raise DuplicateError(f"the group still has {detail[0]} user(s); move or remove them first")
    if code == "missing-group":
        raise NotFoundError(f"no group with id {name!r}")
    if code == "missing":
        raise NotFoundError(f"no {what} with id {name!r}")
    raise StoreError(f"unexpected answer from the Redis store: {code}")


_CLIENT_OPTIONS: dict[str, Any] = dict(decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT,
                                       socket_timeout=COMMAND_TIMEOUT, retry=RETRY, health_check_interval=30)


def _sentinel_client(settings: Any) -> redis.Redis:
    """The primary that the Sentinels name, found again on every new connection: after a
    failover the pool's next connection goes to the promoted replica."""
    # Imported here: only a Sentinel set-up needs it.
    from redis.sentinel import Sentinel

    hosts = []
    for entry in settings.sentinels:
        host, _, port = entry.rpartition(":")
        hosts.append((host.strip("[]"), int(port)))
    sentinel_auth = {"password": settings.sentinel_password} if settings.sentinel_password else {}
    sentinel = Sentinel(hosts, sentinel_kwargs={"socket_connect_timeout": CONNECT_TIMEOUT,
                                                "socket_timeout": CONNECT_TIMEOUT, **sentinel_auth},
                        **_CLIENT_OPTIONS)
    return sentinel.master_for(settings.sentinel_master, db=settings.db, username=settings.username,
                               password=settings.password, **_CLIENT_OPTIONS)


class RedisStore:
    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, *, client: redis.Redis | None = None,
                 where: str = "") -> None:
        self.where = where or safe_location(url)
        self.prefix = prefix
        if client is not None:
            self._redis = client
        else:
            try:
                self._redis = redis.Redis.from_url(url, **_CLIENT_OPTIONS)
            except ValueError as e:
                raise StoreError(f"store.redis_url {self.where} is not a Redis URL ({e}); "
                                 "use redis://host:6379/0, or rediss:// for TLS") from e
        self._take_request = self._redis.register_script(lua.TAKE_REQUEST)
        self._scripts = {name: self._redis.register_script(text) for name, text in {
            "find_user": lua.FIND_USER, "list_users": lua.LIST_USERS, "principal": lua.PRINCIPAL,
            "find_group": lua.FIND_GROUP, "list_groups": lua.LIST_GROUPS, "put_group": lua.PUT_GROUP,
            "remove_group": lua.REMOVE_GROUP, "add_user": lua.ADD_USER, "put_user": lua.PUT_USER,
            "remove_user": lua.REMOVE_USER, "set_credential": lua.SET_CREDENTIAL,
            "credentials_of": lua.CREDENTIALS_OF, "add_failure": lua.ADD_FAILURE,
            "failure_keys": lua.FAILURE_KEYS, "clear_failures": lua.CLEAR_FAILURES,
            "create_session": lua.CREATE_SESSION, "delete_session": lua.DELETE_SESSION,
            "purge_sessions": lua.PURGE_SESSIONS, "reserve": lua.RESERVE, "release": lua.RELEASE,
            "settle_failure": lua.SETTLE_FAILURE, "offer_key_fingerprint": lua.OFFER_KEY_FINGERPRINT,
            "add_strikes": lua.ADD_STRIKES,
        }.items()}
        # The keys each reservation of this process holds: release and settle name them, since a
        # script may only touch keys it is told about.
        self._held: dict[str, list[str]] = {}  # one holder is touched by one attempt only
        self._init_schema()

    @classmethod
    def from_settings(cls, settings: Any) -> RedisStore:
        """The configuration's ``store`` section: ``redis_url``, or ``sentinels`` and ``sentinel_master``."""
        if settings.sentinels:
            where = f"sentinel {settings.sentinel_master} via {', '.join(settings.sentinels)}"
            return cls("", client=_sentinel_client(settings), where=where)
        return cls(settings.redis_url)

    def _run(self, script: str, *args: str) -> Any:
        return self._scripts[script](keys=[], args=[self.prefix, *args])

    @_store_errors
    def _init_schema(self) -> None:
        key = self.prefix + "schema"
        self._redis.set(key, SCHEMA_VERSION, nx=True)
        found = self._redis.get(key)
        if found != SCHEMA_VERSION:
            raise StoreError(f"Redis store {self.where}: key {key} holds schema {found!r}, this gateway "
                             f"understands {SCHEMA_VERSION!r}; use another store.redis_url database or prefix")
        self._seed_version()

    def _seed_version(self) -> None:
        # A random start, not 0: after a FLUSHDB the count restarts from 1 and can never land on
        # a value a cache recorded before, so the flush shows as a change.
        self._redis.set(self.prefix + "version", secrets.randbits(VERSION_SEED_BITS), nx=True)

    def close(self) -> None:
        try:
            self._redis.close()
        except redis.RedisError:
            pass

    # --- change marker ---

    @_store_errors
    def version(self) -> int:
        found = self._redis.get(self.prefix + "version")
        if found is None:  # the key was deleted (FLUSHDB, redis-cli DEL): start a new random count
            self._seed_version()
            found = self._redis.get(self.prefix + "version")
        try:
            return int(found)
        except (TypeError, ValueError) as e:
            raise StoreError(f"Redis key {self.prefix}version in {self.where} is damaged (expected an integer); "
                             f"remove it with redis-cli DEL {self.prefix}version") from e

    # --- the HMAC key every machine must hold (checked by gateway.store.open_store) ---

    @property
    def fingerprint_key(self) -> str:
        return self.prefix + "auth-hmac-fingerprint"

    @_store_errors
    def offer_key_fingerprint(self, fingerprint: str) -> str:
        """Publish ``fingerprint`` unless one is already there; returns the one that is.

        Only the fingerprint: the key itself in Redis, beside the hashes and the keyed index,
        would let whoever reads Redis or its dump files test guesses at HMAC speed.
        """
        found = self._run("offer_key_fingerprint", fingerprint)
        if len(found) != FINGERPRINT_HEX_DIGITS or any(c not in "0123456789abcdef" for c in found):
            raise StoreError(f"Redis key {self.fingerprint_key} in {self.where} is damaged (expected "
                             f"{FINGERPRINT_HEX_DIGITS} hex digits); remove it with redis-cli DEL "
                             f"{self.fingerprint_key}, then start the first machine again")
        return str(found)

    # --- groups ---

    @_store_errors
    def put_group(self, group: Group, *, replace: bool = False) -> Group:
        outcome = self._run("put_group", group.id, group.name, _name_key(group.name), group.role,
                            "1" if group.offline else "0", json.dumps(list(group.doc_types), ensure_ascii=False),
                            group.on_login, group.on_logout, "1" if replace else "0")
        _check(outcome, "group", group.id if outcome[0] == "dup-id" else group.name)
        return group if group.id else dataclasses.replace(group, id=outcome[1])

    @_store_errors
    def get_group(self, group_id: str) -> Group | None:
        flat = self._run("find_group", group_id, "")
        return _group(flat) if flat else None

    @_store_errors
    def find_group(self, id_or_name: str) -> Group | None:
        flat = self._run("find_group", id_or_name, _name_key(id_or_name))
        return _group(flat) if flat else None

    @_store_errors
    def list_groups(self) -> list[Group]:
        groups = [_group(flat) for flat in self._run("list_groups")]
        return sorted(groups, key=lambda g: _name_key(g.name))

    @_store_errors
    def remove_group(self, group_id: str) -> None:
        _check(self._run("remove_group", group_id), "group", group_id)

    # --- users ---

    @staticmethod
    def _user_args(user: User) -> list[str]:
        return [user.id, user.name, _name_key(user.name), user.group_id, user.description,
                json.dumps(list(user.warehouses), ensure_ascii=False)]

    @staticmethod
    def _check_user_outcome(outcome: list[str], user: User) -> None:
        if outcome[0] == "missing-group":
            _check(outcome, "user", user.group_id)
        _check(outcome, "user", user.id if outcome[0] == "dup-id" else user.name)

    @_store_errors
    def add_user(self, user: User, credentials: tuple[Credential, ...]) -> User:
        creds = [part for c in credentials for part in (c.key, c.kind, c.hash)]
        outcome = self._run("add_user", *self._user_args(user), str(user.generation), *creds)
        self._check_user_outcome(outcome, user)
        return user if user.id else dataclasses.replace(user, id=outcome[1])

    @_store_errors
    def put_user(self, user: User) -> None:
        self._check_user_outcome(self._run("put_user", *self._user_args(user)), user)

    @_store_errors
    def get_user(self, user_id: str) -> User | None:
        flat = self._run("find_user", user_id, "")
        return _user(flat) if flat else None

    @_store_errors
    def find_user(self, id_or_name: str) -> User | None:
        flat = self._run("find_user", id_or_name, _name_key(id_or_name))
        return _user(flat) if flat else None

    @_store_errors
    def list_users(self) -> list[User]:
        users = [_user(flat) for flat in self._run("list_users")]
        return sorted(users, key=lambda u: _name_key(u.name))

    @_store_errors
    def remove_user(self, user_id: str) -> None:
        _check(self._run("remove_user", user_id), "user", user_id)

    @_store_errors
    def set_credential(self, user_id: str, credential: Credential | None, kind: str) -> None:
        new = [credential.key, credential.hash] if credential is not None else []
        _check(self._run("set_credential", user_id, kind, *new), "user", user_id)

    @_store_errors
    def credentials_of(self, user_id: str) -> tuple[Credential, ...]:
        flat = self._run("credentials_of", user_id)
        creds = [Credential(flat[i], flat[i + 1], flat[i + 2], user_id) for i in range(0, len(flat), 3)]
        return tuple(sorted(creds, key=lambda c: c.kind, reverse=True))  # password first, as SQLite

    @_store_errors
    def find_credential(self, key: str) -> Credential | None:
        found = self._redis.hgetall(self.prefix + "cred:" + key)
        return Credential(key, found["kind"], found["hash"], found["user_id"]) if found else None

    @_store_errors
    def principal(self, user_id: str) -> Principal | None:
        found = self._run("principal", user_id)
        return Principal(_user(found[0]), _group(found[1])) if found else None

    @_store_errors
    def next_id(self, table: str) -> str:
        if table not in ("users", "groups"):
            raise ValueError(table)
        numbers = [int(i) for i in self._redis.smembers(self.prefix + table) if str(i).isdigit()]
        return str(max(numbers, default=0) + 1)

    # --- failed logins ---

    @_store_errors
    def add_failure(self, key: str, at: float, forget_before: float, who: str = "") -> None:
        # The row lives as long as any window can still count it, measured from now.
        ttl = max(1, math.ceil(at - forget_before)) + 1
        self._run("add_failure", key, _num(at), _num(forget_before), _member(who), str(ttl))

    @_store_errors
    def failure_times(self, key: str, since: float) -> list[float]:
        rows = self._redis.zrangebyscore(self.prefix + "fail:" + key, _num(since), "+inf", withscores=True)
        return [float(score) for _member, score in rows]

    @_store_errors
    def failure_keys(self, since: float) -> dict[str, list[float]]:
        flat = self._run("failure_keys", _num(since))
        found = {flat[i]: sorted(float(t) for t in flat[i + 1]) for i in range(0, len(flat), 2)}
        return {key: found[key] for key in sorted(found)}

    @_store_errors
    def clear_failures(self, key: str) -> int:
        return int(self._run("clear_failures", key))

    # --- login attempts being checked (see gateway.auth.throttle) ---

    @_store_errors
    def reserve(self, places: Sequence[Place], holder: str, now: float, lease: float) -> Reservation:
        args = [a for place in places for a in (place.key, str(place.limit), _num(place.window))]
        found = self._run("reserve", holder, _num(now), _num(lease), *args)
        outcome = found[0]
        if outcome == "refused":
            place = next(p for p in places if p.key == found[1])
            return Reservation.refused(place, int(found[2]), float(found[3]), now)
        if outcome == "wait":
            return Reservation("wait", found[1], int(found[2]), holders=found[3])
        if outcome == "reserved":
            self._held[holder] = [place.key for place in places]
            return Reservation("reserved")
        raise StoreError(f"unexpected answer from the Redis store: {outcome}")

    @_store_errors
    def release(self, holder: str) -> None:
        held = self._held.pop(holder, [])
        if held:
            self._run("release", holder, *held)

    @_store_errors
    def settle_failure(self, holder: str, rows: Sequence[tuple[str, str]], at: float, forget_before: float) -> None:
        held = self._held.pop(holder, [])
        ttl = max(1, math.ceil(at - forget_before)) + 1
        flat = [a for key, who in rows for a in (key, _member(who))]
        self._run("settle_failure", holder, _num(at), _num(forget_before), str(ttl), str(len(held)), *held, *flat)

    @_store_errors
    def failure_summary(self, key: str, since: float) -> tuple[int, int, int]:
        pipe = self._redis.pipeline(transaction=False)  # one round trip
        pipe.zrangebyscore(self.prefix + "fail:" + key, "(" + _num(since), "+inf")
        pipe.zcard(self.prefix + "held:" + key)
        members, held = pipe.execute()
        return len(members), len({m.rpartition("|")[0] for m in members}), int(held)

    @_store_errors
    def claim(self, key: str, now: float, until: float) -> bool:
        ms = max(1, math.ceil((until - now) * 1000))
        return bool(self._redis.set(self.prefix + "claim:" + key, "1", nx=True, px=ms))

    # --- request rates ---

    @_store_errors
    def take_request(self, key: str, now: float, rate: float, burst: int) -> float:
        # ``now`` is unused: the script reads the Redis server's clock, the one all machines share.
        return float(self._take_request(keys=[self.prefix + "rate:" + key], args=[repr(rate), str(burst)]))

    # --- short bans ---

    @_store_errors
    def add_strikes(self, counts: Sequence[tuple[str, int]], now: float, window: float, limit: int,
                    ban: float) -> tuple[list[str], dict[str, float]]:
        if not counts:
            return [], self.short_bans(now)
        flat = [a for key, n in counts for a in (key, str(int(n)))]
        banned, bans = self._run("add_strikes", _num(now), _num(window), str(int(limit)), _num(ban), *flat)
        return list(banned), {bans[i]: float(bans[i + 1]) for i in range(0, len(bans), 2)}

    @_store_errors
    def short_bans(self, now: float) -> dict[str, float]:
        rows = self._redis.zrangebyscore(self.prefix + "short-bans", "(" + _num(now), "+inf", withscores=True)
        return {key: float(until) for key, until in rows}

    @_store_errors
    def lift_short_ban(self, key: str) -> int:
        pipe = self._redis.pipeline(transaction=True)
        pipe.zscore(self.prefix + "short-bans", key)
        pipe.zrem(self.prefix + "short-bans", key)
        pipe.delete(self.prefix + "strikes:" + key)
        until, _removed, _deleted = pipe.execute()
        return int(until is not None and float(until) > time.time())

    # --- gateway sessions ---

    @_store_errors
    def create_session(self, token_hash: str, record: SessionRecord) -> None:
        ttl = max(0, math.ceil(record.expires - time.time())) + SESSION_GRACE
        outcome = self._run("create_session", token_hash, record.user_id, str(record.generation),
                            _num(record.expires), str(ttl))
        if outcome[0] == "dup":
            raise StoreError("a session with this token already exists")
        if outcome[0] == "missing-user":
            raise NotFoundError(f"no user with id {record.user_id!r}")

    @_store_errors
    def get_session(self, token_hash: str) -> SessionRecord | None:
        user_id, generation, expires = self._redis.hmget(self.prefix + "session:" + token_hash,
                                                         ["user_id", "generation", "expires"])
        if user_id is None or generation is None or expires is None:
            return None
        return SessionRecord(user_id, int(generation), float(expires))

    @_store_errors
    def delete_session(self, token_hash: str) -> None:
        self._run("delete_session", token_hash)

    @_store_errors
    def purge_sessions(self, now: float) -> int:
        return int(self._run("purge_sessions", _num(now)))

    # --- short leases ---

    @_store_errors
    def try_lock(self, name: str, owner: str, ttl: float) -> bool:
        key = self.prefix + "lease:" + name
        taken = self._redis.eval(lua.TRY_LOCK, 1, key, owner, str(max(1, int(ttl * 1000))))
        return bool(taken)

    @_store_errors
    def unlock(self, name: str, owner: str) -> None:
        self._redis.eval(lua.UNLOCK, 1, self.prefix + "lease:" + name, owner)

    # --- small shared values ---

    @_store_errors
    def put_shared(self, name: str, value: str, ttl: float | None = None) -> None:
        key = self.prefix + "shared:" + name
        if ttl is None:
            self._redis.set(key, value)
        else:
            self._redis.set(key, value, px=max(1, int(ttl * 1000)))

    @_store_errors
    def get_shared(self, name: str) -> str | None:
        found = self._redis.get(self.prefix + "shared:" + name)
        return None if found is None else str(found)

    @_store_errors
    def delete_shared(self, name: str) -> None:
        self._redis.delete(self.prefix + "shared:" + name)
