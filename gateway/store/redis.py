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

from gateway.store.base import (
    Credential, DuplicateError, Group, NotFoundError, Place, Principal, Reservation, SessionRecord, StoreError,
    User,
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

# --- scripts (ARGV[1] is always the key prefix) ---

_USER_BY = """
local p = ARGV[1]
local function user_by(id)
  local u = redis.call('HGETALL', p..'user:'..id)
  if #u == 0 then return nil end
  table.insert(u, 'has_barcode')
  table.insert(u, tostring(redis.call('HEXISTS', p..'user-creds:'..id, 'barcode')))
  return u
end
"""

# ARGV: p, id, name_key ('' = by id only). An exact id wins over a name, as in SQLite.
_FIND_USER = _USER_BY + """
local u = user_by(ARGV[2])
if not u and ARGV[3] ~= '' then
  local id = redis.call('HGET', p..'user-names', ARGV[3])
  if id then u = user_by(id) end
end
return u
"""

_LIST_USERS = _USER_BY + """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', p..'users')) do
  local u = user_by(id)
  if u then table.insert(out, u) end
end
return out
"""

# ARGV: p, user id. User and group from the same moment.
_PRINCIPAL = _USER_BY + """
local u = user_by(ARGV[2])
if not u then return nil end
local g = redis.call('HGETALL', p..'group:'..redis.call('HGET', p..'user:'..ARGV[2], 'group_id'))
if #g == 0 then return nil end
return {u, g}
"""

# ARGV: p, id, name_key
_FIND_GROUP = """
local p = ARGV[1]
local g = redis.call('HGETALL', p..'group:'..ARGV[2])
if #g == 0 and ARGV[3] ~= '' then
  local id = redis.call('HGET', p..'group-names', ARGV[3])
  if id then g = redis.call('HGETALL', p..'group:'..id) end
end
if #g == 0 then return nil end
return g
"""

_LIST_GROUPS = """
local p = ARGV[1]
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', p..'groups')) do
  local g = redis.call('HGETALL', p..'group:'..id)
  if #g > 0 then table.insert(out, g) end
end
return out
"""

# The next free number among a set's ids, inside the script that inserts: no other writer runs
# in between, on any machine.
_NEXT_ID = """
local function next_id(set)
  local top = 0
  for _, x in ipairs(redis.call('SMEMBERS', set)) do
    if string.match(x, '^%d+$') and tonumber(x) > top then top = tonumber(x) end
  end
  return tostring(top + 1)
end
"""

# ARGV: p, id ('' = the next free number), name, name_key, role, offline, doc_types, on_login,
# on_logout, replace -> {'ok', id} or a refusal
_PUT_GROUP = _NEXT_ID + """
local p, id, name_key = ARGV[1], ARGV[2], ARGV[4]
if id == '' then id = next_id(p..'groups') end
local clash = redis.call('HGET', p..'group-names', name_key)
if clash and clash ~= id then return {'dup-name', clash} end
local key = p..'group:'..id
local old_name = redis.call('HGET', key, 'name_key')
if old_name and ARGV[10] ~= '1' then return {'dup-id'} end
if old_name and old_name ~= name_key then redis.call('HDEL', p..'group-names', old_name) end
redis.call('HSET', key, 'id', id, 'name', ARGV[3], 'name_key', name_key, 'role', ARGV[5],
           'offline', ARGV[6], 'doc_types', ARGV[7], 'on_login', ARGV[8], 'on_logout', ARGV[9])
redis.call('HSET', p..'group-names', name_key, id)
redis.call('SADD', p..'groups', id)
redis.call('INCR', ARGV[1]..'version')
return {'ok', id}
"""

# ARGV: p, id
_REMOVE_GROUP = """
local p, id = ARGV[1], ARGV[2]
local members = redis.call('SCARD', p..'group-members:'..id)
if members > 0 then return {'members', tostring(members)} end
local key = p..'group:'..id
local name_key = redis.call('HGET', key, 'name_key')
if not name_key then return {'missing'} end
redis.call('HDEL', p..'group-names', name_key)
redis.call('SREM', p..'groups', id)
redis.call('DEL', key, p..'group-members:'..id)
redis.call('INCR', ARGV[1]..'version')
return {'ok'}
"""

# Shared by the user writes: the checks SQLite's constraints make, as return values.
_USER_CHECKS = """
local p = ARGV[1]
local function check_user(id, name_key, group_id)
  local clash = redis.call('HGET', p..'user-names', name_key)
  if clash and clash ~= id then return {'dup-name', clash} end
  if redis.call('EXISTS', p..'group:'..group_id) == 0 then return {'missing-group'} end
  return nil
end
local function drop_sessions(id)
  local set = p..'user-sessions:'..id
  for _, token in ipairs(redis.call('SMEMBERS', set)) do
    redis.call('DEL', p..'session:'..token)
    redis.call('ZREM', p..'sessions', token)
  end
  redis.call('DEL', set)
end
"""

# ARGV: p, id, name, name_key, group_id, description, warehouses, generation, then
# (key, kind, hash) per credential.
_ADD_USER = _USER_CHECKS + _NEXT_ID + """
local id, name_key, group_id = ARGV[2], ARGV[4], ARGV[5]
if id == '' then id = next_id(p..'users') end
local key = p..'user:'..id
if redis.call('EXISTS', key) == 1 then return {'dup-id'} end
local bad = check_user(id, name_key, group_id)
if bad then return bad end
local seen_keys, seen_kinds = {}, {}
for i = 9, #ARGV, 3 do
  local ckey, kind = ARGV[i], ARGV[i + 1]
  if seen_keys[ckey] or redis.call('EXISTS', p..'cred:'..ckey) == 1 then return {'dup-cred', kind} end
  if seen_kinds[kind] then return {'dup-kind', kind} end
  seen_keys[ckey], seen_kinds[kind] = true, true
end
redis.call('HSET', key, 'id', id, 'name', ARGV[3], 'name_key', name_key, 'group_id', group_id,
           'description', ARGV[6], 'warehouses', ARGV[7], 'generation', ARGV[8])
redis.call('HSET', p..'user-names', name_key, id)
redis.call('SADD', p..'users', id)
redis.call('SADD', p..'group-members:'..group_id, id)
for i = 9, #ARGV, 3 do
  redis.call('HSET', p..'cred:'..ARGV[i], 'user_id', id, 'kind', ARGV[i + 1], 'hash', ARGV[i + 2])
  redis.call('HSET', p..'user-creds:'..id, ARGV[i + 1], ARGV[i])
end
redis.call('INCR', ARGV[1]..'version')
return {'ok', id}
"""

# ARGV: p, id, name, name_key, group_id, description, warehouses. Credentials stay; an existing
# user's generation goes up, a new one starts at 1 (as SQLite's column default).
_PUT_USER = _USER_CHECKS + """
local id, name_key, group_id = ARGV[2], ARGV[4], ARGV[5]
local bad = check_user(id, name_key, group_id)
if bad then return bad end
local key = p..'user:'..id
local old = redis.call('HMGET', key, 'name_key', 'group_id')
if old[1] then
  if old[1] ~= name_key then redis.call('HDEL', p..'user-names', old[1]) end
  if old[2] ~= group_id then redis.call('SREM', p..'group-members:'..old[2], id) end
  redis.call('HINCRBY', key, 'generation', 1)
else
  redis.call('HSET', key, 'generation', '1')
end
redis.call('HSET', key, 'id', id, 'name', ARGV[3], 'name_key', name_key, 'group_id', group_id,
           'description', ARGV[6], 'warehouses', ARGV[7])
redis.call('HSET', p..'user-names', name_key, id)
redis.call('SADD', p..'users', id)
redis.call('SADD', p..'group-members:'..group_id, id)
redis.call('INCR', ARGV[1]..'version')
return {'ok'}
"""

# ARGV: p, id. Credentials and sessions go with the user, as SQLite's ON DELETE CASCADE.
_REMOVE_USER = _USER_CHECKS + """
local id = ARGV[2]
local key = p..'user:'..id
local old = redis.call('HMGET', key, 'name_key', 'group_id')
if not old[1] then return {'missing'} end
local creds = p..'user-creds:'..id
for _, ckey in ipairs(redis.call('HVALS', creds)) do redis.call('DEL', p..'cred:'..ckey) end
drop_sessions(id)
redis.call('HDEL', p..'user-names', old[1])
redis.call('SREM', p..'group-members:'..old[2], id)
redis.call('SREM', p..'users', id)
redis.call('DEL', key, creds)
redis.call('INCR', ARGV[1]..'version')
return {'ok'}
"""

# ARGV: p, id, kind, then key and hash of the new credential (absent: remove the secret).
_SET_CREDENTIAL = _USER_CHECKS + """
local id, kind, ckey = ARGV[2], ARGV[3], ARGV[4]
local key = p..'user:'..id
if redis.call('EXISTS', key) == 0 then return {'missing'} end
local creds = p..'user-creds:'..id
local old = redis.call('HGET', creds, kind)
-- SQLite deletes the old secret before inserting: re-setting the same one is allowed.
if ckey and ckey ~= old and redis.call('EXISTS', p..'cred:'..ckey) == 1 then return {'dup-cred', kind} end
if old then
  redis.call('DEL', p..'cred:'..old)
  redis.call('HDEL', creds, kind)
end
if ckey then
  redis.call('HSET', p..'cred:'..ckey, 'user_id', id, 'kind', kind, 'hash', ARGV[5])
  redis.call('HSET', creds, kind, ckey)
end
redis.call('HINCRBY', key, 'generation', 1)
drop_sessions(id)
redis.call('INCR', ARGV[1]..'version')
return {'ok'}
"""

# ARGV: p, user id -> flat list of key, kind, hash per credential
_CREDENTIALS_OF = """
local p, id = ARGV[1], ARGV[2]
local out = {}
local pairs_ = redis.call('HGETALL', p..'user-creds:'..id)
for i = 1, #pairs_, 2 do
  local c = redis.call('HMGET', p..'cred:'..pairs_[i + 1], 'kind', 'hash', 'user_id')
  if c[1] then
    table.insert(out, pairs_[i + 1]); table.insert(out, c[1]); table.insert(out, c[2])
  end
end
return out
"""

# Failure rows, shared by the scripts that record failures. The index is scored by each key's
# oldest failure, so pruning (SQLite's "DELETE FROM failures WHERE at < ?") touches only keys
# holding old rows.
_FAILURE_ROWS = """
local function add_failure_row(p, key, at, member, ttl)
  local rows = p..'fail:'..key
  redis.call('ZADD', rows, at, member)
  redis.call('EXPIRE', rows, ttl)
  redis.call('ZADD', p..'fail-keys', redis.call('ZRANGE', rows, 0, 0, 'WITHSCORES')[2], key)
end
local function prune_failures(p, forget, ttl)
  local index = p..'fail-keys'
  for _, k in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '('..forget)) do
    local old = p..'fail:'..k
    redis.call('ZREMRANGEBYSCORE', old, '-inf', '('..forget)
    local first = redis.call('ZRANGE', old, 0, 0, 'WITHSCORES')
    if #first == 0 then redis.call('ZREM', index, k) else redis.call('ZADD', index, first[2], k) end
  end
  if redis.call('TTL', index) < ttl then redis.call('EXPIRE', index, ttl) end
end
"""

# ARGV: p, key, at, forget_before, member, ttl
_ADD_FAILURE = _FAILURE_ROWS + """
local p, key, at, forget, member, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
add_failure_row(p, key, at, member, ttl)
prune_failures(p, forget, ttl)
redis.call('INCR', p..'version')
return 1
"""

# ARGV: p, holder, now, lease, then key, limit, window per place. Expired leases (a process that
# died mid-check) are dropped first; a full window refuses, places all held make it wait.
_RESERVE = """
local p, holder, now, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local waiting = nil
for i = 5, #ARGV, 3 do
  local key, limit, window = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local held = p..'held:'..key
  redis.call('ZREMRANGEBYSCORE', held, '-inf', '('..ARGV[3])
  local rows = redis.call('ZRANGEBYSCORE', p..'fail:'..key, '('..tostring(now - window), '+inf', 'WITHSCORES')
  local n = #rows / 2
  if n >= limit then
    return {'refused', key, tostring(n), rows[2 * (n - limit) + 2]}
  end
  if not waiting and n + redis.call('ZCARD', held) >= limit then
    waiting = {'wait', key, tostring(n), table.concat(redis.call('ZRANGE', held, 0, -1), ' ')}
  end
end
if waiting then return waiting end
for i = 5, #ARGV, 3 do
  local held = p..'held:'..ARGV[i]
  redis.call('ZADD', held, now + lease, holder)
  redis.call('EXPIRE', held, math.ceil(lease) + 1)
end
return {'reserved'}
"""

# ARGV: p, holder, then the keys it holds
_RELEASE = """
for i = 3, #ARGV do redis.call('ZREM', ARGV[1]..'held:'..ARGV[i], ARGV[2]) end
return 1
"""

# ARGV: p, holder, at, forget_before, ttl, n held keys, the held keys, then (key, member) per row.
# One step: the places go and the failures appear, so no count ever misses the attempt.
_SETTLE_FAILURE = _FAILURE_ROWS + """
local p, holder, at, forget, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local n = tonumber(ARGV[6])
for i = 7, 6 + n do redis.call('ZREM', p..'held:'..ARGV[i], holder) end
for i = 7 + n, #ARGV, 2 do add_failure_row(p, ARGV[i], at, ARGV[i + 1], ttl) end
prune_failures(p, forget, ttl)
redis.call('INCR', p..'version')
return 1
"""

# ARGV: p, since -> flat list of key, {times}
_FAILURE_KEYS = """
local p, since = ARGV[1], ARGV[2]
local out = {}
for _, k in ipairs(redis.call('ZRANGE', p..'fail-keys', 0, -1)) do
  local rows = redis.call('ZRANGEBYSCORE', p..'fail:'..k, since, '+inf', 'WITHSCORES')
  if #rows > 0 then
    local times = {}
    for i = 2, #rows, 2 do table.insert(times, rows[i]) end
    table.insert(out, k); table.insert(out, times)
  end
end
return out
"""

# ARGV: p, key
_CLEAR_FAILURES = """
local p, key = ARGV[1], ARGV[2]
local rows = p..'fail:'..key
local n = redis.call('ZCARD', rows)
redis.call('DEL', rows)
redis.call('ZREM', p..'fail-keys', key)
redis.call('INCR', ARGV[1]..'version')
return n
"""

# ARGV: p, token_hash, user_id, generation, expires, ttl
_CREATE_SESSION = """
local p, token, id, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[6])
local key = p..'session:'..token
if redis.call('EXISTS', key) == 1 then return {'dup'} end
if redis.call('EXISTS', p..'user:'..id) == 0 then return {'missing-user'} end
redis.call('HSET', key, 'user_id', id, 'generation', ARGV[4], 'expires', ARGV[5])
redis.call('EXPIRE', key, ttl)
redis.call('ZADD', p..'sessions', ARGV[5], token)
local mine = p..'user-sessions:'..id
redis.call('SADD', mine, token)
if redis.call('TTL', mine) < ttl then redis.call('EXPIRE', mine, ttl) end
redis.call('INCR', ARGV[1]..'version')
return {'ok'}
"""

# ARGV: p, token_hash
_DELETE_SESSION = """
local p, token = ARGV[1], ARGV[2]
local key = p..'session:'..token
local id = redis.call('HGET', key, 'user_id')
if id then redis.call('SREM', p..'user-sessions:'..id, token) end
redis.call('DEL', key)
redis.call('ZREM', p..'sessions', token)
redis.call('INCR', ARGV[1]..'version')
return 1
"""

# ARGV: p, now -> how many sessions expired before now
_PURGE_SESSIONS = """
local p, now = ARGV[1], ARGV[2]
local index = p..'sessions'
local expired = redis.call('ZRANGEBYSCORE', index, '-inf', '('..now)
for _, token in ipairs(expired) do
  local key = p..'session:'..token
  local id = redis.call('HGET', key, 'user_id')
  if id then redis.call('SREM', p..'user-sessions:'..id, token) end
  redis.call('DEL', key)
  redis.call('ZREM', index, token)
end
if #expired > 0 then redis.call('INCR', ARGV[1]..'version') end
return #expired
"""

# ARGV: p, candidate fingerprint -> the fingerprint every machine's key must have (the first one
# offered wins)
_OFFER_KEY_FINGERPRINT = """
local key = ARGV[1]..'auth-hmac-fingerprint'
local current = redis.call('GET', key)
if current then return current end
redis.call('SET', key, ARGV[2])
redis.call('INCR', ARGV[1]..'version')
return ARGV[2]
"""


def _store_errors(method: Callable[..., T]) -> Callable[..., T]:
    """Every Redis failure (refused, timed out, script error) leaves as StoreError: callers fail closed."""
    @functools.wraps(method)
    def wrapper(self: RedisStore, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except redis.ConnectionError as e:  # refused, unreachable, wrong password
            reason = str(e).rstrip(".")
            raise StoreError(f"Redis store {self.where} cannot be reached ({reason}); check that Redis runs "
                             "and that store.redis_url (host, port, password) is right") from e
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


class RedisStore:
    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.where = safe_location(url)
        self.prefix = prefix
        try:
            self._redis = redis.Redis.from_url(
                url, decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=COMMAND_TIMEOUT, retry=RETRY, health_check_interval=30)
        except ValueError as e:
            raise StoreError(f"store.redis_url {self.where} is not a Redis URL ({e}); "
                             "use redis://host:6379/0, or rediss:// for TLS") from e
        self._scripts = {name: self._redis.register_script(text) for name, text in {
            "find_user": _FIND_USER, "list_users": _LIST_USERS, "principal": _PRINCIPAL,
            "find_group": _FIND_GROUP, "list_groups": _LIST_GROUPS, "put_group": _PUT_GROUP,
            "remove_group": _REMOVE_GROUP, "add_user": _ADD_USER, "put_user": _PUT_USER,
            "remove_user": _REMOVE_USER, "set_credential": _SET_CREDENTIAL,
            "credentials_of": _CREDENTIALS_OF, "add_failure": _ADD_FAILURE,
            "failure_keys": _FAILURE_KEYS, "clear_failures": _CLEAR_FAILURES,
            "create_session": _CREATE_SESSION, "delete_session": _DELETE_SESSION,
            "purge_sessions": _PURGE_SESSIONS, "reserve": _RESERVE, "release": _RELEASE,
            "settle_failure": _SETTLE_FAILURE, "offer_key_fingerprint": _OFFER_KEY_FINGERPRINT,
        }.items()}
        # The keys each reservation of this process holds: release and settle name them, since a
        # script may only touch keys it is told about.
        self._held: dict[str, list[str]] = {}  # one holder is touched by one attempt only
        self._init_schema()

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
    def failure_summary(self, key: str, since: float) -> tuple[int, int]:
        members = self._redis.zrangebyscore(self.prefix + "fail:" + key, "(" + _num(since), "+inf")
        return len(members), len({m.rpartition("|")[0] for m in members})

    @_store_errors
    def claim(self, key: str, now: float, until: float) -> bool:
        ms = max(1, math.ceil((until - now) * 1000))
        return bool(self._redis.set(self.prefix + "claim:" + key, "1", nx=True, px=ms))

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
        taken = self._redis.eval(_TRY_LOCK, 1, key, owner, str(max(1, int(ttl * 1000))))
        return bool(taken)

    @_store_errors
    def unlock(self, name: str, owner: str) -> None:
        self._redis.eval(_UNLOCK, 1, self.prefix + "lease:" + name, owner)

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


# Take the lease when free or already ours (extending it); atomic on the server.
_TRY_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

