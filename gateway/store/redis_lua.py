"""The Redis store's Lua scripts, each run atomically on the server (gateway/store/redis.py
registers them). ARGV[1] is the key prefix, except in the two lease scripts, which get their key
as KEYS[1].
"""

USER_BY = """
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
FIND_USER = USER_BY + """
local u = user_by(ARGV[2])
if not u and ARGV[3] ~= '' then
  local id = redis.call('HGET', p..'user-names', ARGV[3])
  if id then u = user_by(id) end
end
return u
"""

LIST_USERS = USER_BY + """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', p..'users')) do
  local u = user_by(id)
  if u then table.insert(out, u) end
end
return out
"""

# ARGV: p, user id. User and group from the same moment.
PRINCIPAL = USER_BY + """
local u = user_by(ARGV[2])
if not u then return nil end
local g = redis.call('HGETALL', p..'group:'..redis.call('HGET', p..'user:'..ARGV[2], 'group_id'))
if #g == 0 then return nil end
return {u, g}
"""

# ARGV: p, id, name_key
FIND_GROUP = """
local p = ARGV[1]
local g = redis.call('HGETALL', p..'group:'..ARGV[2])
if #g == 0 and ARGV[3] ~= '' then
  local id = redis.call('HGET', p..'group-names', ARGV[3])
  if id then g = redis.call('HGETALL', p..'group:'..id) end
end
if #g == 0 then return nil end
return g
"""

LIST_GROUPS = """
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
NEXT_ID = """
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
PUT_GROUP = NEXT_ID + """
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
REMOVE_GROUP = """
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
USER_CHECKS = """
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
ADD_USER = USER_CHECKS + NEXT_ID + """
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
PUT_USER = USER_CHECKS + """
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
REMOVE_USER = USER_CHECKS + """
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
SET_CREDENTIAL = USER_CHECKS + """
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
CREDENTIALS_OF = """
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
FAILURE_ROWS = """
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
ADD_FAILURE = FAILURE_ROWS + """
local p, key, at, forget, member, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
add_failure_row(p, key, at, member, ttl)
prune_failures(p, forget, ttl)
redis.call('INCR', p..'version')
return 1
"""

# ARGV: p, holder, now, lease, then key, limit, window per place. Expired leases (a process that
# died mid-check) are dropped first; a full window refuses, places all held make it wait.
RESERVE = """
local p, holder, now, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local waiting = nil
for i = 5, #ARGV, 3 do
  local key, limit, window = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local held = p..'held:'..key
  redis.call('ZREMRANGEBYSCORE', held, '-inf', '('..ARGV[3])
  if limit > 0 then  -- 0: counted only (a base's spray budget), never refuses or waits
    local rows = redis.call('ZRANGEBYSCORE', p..'fail:'..key, '('..tostring(now - window), '+inf', 'WITHSCORES')
    local n = #rows / 2
    if n >= limit then
      return {'refused', key, tostring(n), rows[2 * (n - limit) + 2]}
    end
    if not waiting and n + redis.call('ZCARD', held) >= limit then
      waiting = {'wait', key, tostring(n), table.concat(redis.call('ZRANGE', held, 0, -1), ' ')}
    end
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
RELEASE = """
for i = 3, #ARGV do redis.call('ZREM', ARGV[1]..'held:'..ARGV[i], ARGV[2]) end
return 1
"""

# ARGV: p, holder, at, forget_before, ttl, n held keys, the held keys, then (key, member) per row.
# One step: the places go and the failures appear, so no count ever misses the attempt.
SETTLE_FAILURE = FAILURE_ROWS + """
local p, holder, at, forget, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local n = tonumber(ARGV[6])
for i = 7, 6 + n do redis.call('ZREM', p..'held:'..ARGV[i], holder) end
for i = 7 + n, #ARGV, 2 do add_failure_row(p, ARGV[i], at, ARGV[i + 1], ttl) end
prune_failures(p, forget, ttl)
redis.call('INCR', p..'version')
return 1
"""

# ARGV: p, since -> flat list of key, {times}
FAILURE_KEYS = """
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
CLEAR_FAILURES = """
local p, key = ARGV[1], ARGV[2]
local rows = p..'fail:'..key
local n = redis.call('ZCARD', rows)
redis.call('DEL', rows)
redis.call('ZREM', p..'fail-keys', key)
redis.call('INCR', ARGV[1]..'version')
return n
"""

# ARGV: p, token_hash, user_id, generation, expires, ttl
CREATE_SESSION = """
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
DELETE_SESSION = """
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
PURGE_SESSIONS = """
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
OFFER_KEY_FINGERPRINT = """
local key = ARGV[1]..'auth-hmac-fingerprint'
local current = redis.call('GET', key)
if current then return current end
redis.call('SET', key, ARGV[2])
redis.call('INCR', ARGV[1]..'version')
return ARGV[2]
"""


# Take the lease when free or already ours (extending it); atomic on the server.
TRY_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


# nginx's limit_req step on the server's clock (machines' clocks may differ); KEYS[1] the bucket,
# ARGV: rate (requests/s), burst. Returns "0" when the request fits, else the seconds to wait.
TAKE_REQUEST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'excess', 'at')
local excess = 0
if b[1] then
  excess = math.max(0, tonumber(b[1]) - rate * math.max(0, now - tonumber(b[2])) + 1)
end
if excess > burst then return tostring((excess - burst) / rate) end
redis.call('HSET', KEYS[1], 'excess', tostring(excess), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((excess / rate + 60) * 1000))
return "0"
"""

# ARGV: p, now, window, limit, ban, then (key, n) per key. Strikes per key are a hash of whole
# seconds → count (one field per flush, not per strike); a whole second counts while any part of
# it lies in the window. Bans are one sorted set scored by their end. Never INCRs the version:
# counting must not empty every machine's caches.
ADD_STRIKES = """
local p, now, window, limit, ban = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local bans = p..'short-bans'
redis.call('ZREMRANGEBYSCORE', bans, '-inf', ARGV[2])
local banned = {}
for i = 6, #ARGV, 2 do
  local key = ARGV[i]
  if not redis.call('ZSCORE', bans, key) then
    local strikes = p..'strikes:'..key
    redis.call('HINCRBY', strikes, tostring(math.floor(now)), tonumber(ARGV[i + 1]))
    redis.call('EXPIRE', strikes, math.ceil(window) + 2)
    local total = 0
    local flat = redis.call('HGETALL', strikes)
    for j = 1, #flat, 2 do
      if tonumber(flat[j]) > now - window - 1 then
        total = total + tonumber(flat[j + 1])
      else
        redis.call('HDEL', strikes, flat[j])
      end
    end
    if total > limit then
      redis.call('ZADD', bans, tostring(now + ban), key)
      redis.call('DEL', strikes)
      table.insert(banned, key)
    end
  end
end
if #banned > 0 and redis.call('TTL', bans) < ban then redis.call('EXPIRE', bans, math.ceil(ban) + 1) end
return {banned, redis.call('ZRANGEBYSCORE', bans, '('..ARGV[2], '+inf', 'WITHSCORES')}
"""
