"""The Lua scripts of the Redis history (see :mod:`rtdelivery.history.redis`).

Each runs atomically in Redis: "next seq + store + trim" (``APPEND``) and every read
(``READ``), with the rollback fencing both share (``PRELUDE``).
"""

from __future__ import annotations

import hashlib

# Shared by the scripts.
#
# load(): the topic's record, or nil when it has none (nothing is written then). A record
# whose history may have gone back is replaced by a new, empty epoch before anything
# else happens, so no (epoch, seq) is issued twice. The evidence:
# - `run` (the Redis server's run_id at the record's last write) is not the running
#   server's: Redis restarted or failed over since (RDB, AOF everysec, a promoted replica
#   may all have lost the last writes; continuity cannot be proven, so it is not assumed);
# - a position (this process's highest seen, or a reader's cursor) is beyond the head in
#   the current epoch: only a rollback makes the head go back.
# A record without `run` (written by an older rtdelivery) adopts the running server's.
#
# trim_old(): drop records older than the age limit, oldest first (at most the list's
# length, which the size limit bounds; each record is dropped once, so the work is
# amortized over the appends).
PRELUDE = """
local function run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
end
local function load(meta, log, fresh, seen_epoch, seen_seq, since_epoch, since_seq)
  local m = redis.call('HMGET', meta, 'epoch', 'seq', 'run', 'reset')
  local epoch = m[1]
  if not epoch then return nil end
  local head = tonumber(m[2])
  local run = run_id()
  if (m[3] and m[3] ~= run)
      or (seen_epoch == epoch and tonumber(seen_seq) > head)
      or (since_epoch == epoch and tonumber(since_seq) > head) then
    -- (exact: epochs are below 2^48, and %.0f never switches to an exponent)
    if fresh == epoch then fresh = string.format('%.0f', tonumber(fresh) + 2) end
    redis.call('HSET', meta, 'epoch', fresh, 'seq', 0, 'run', run, 'reset', 1)
    redis.call('DEL', log)
    return fresh, 0, true
  end
  if not m[3] then redis.call('HSET', meta, 'run', run) end
  return epoch, head, m[4] == '1'
end
local function trim_old(log, min_time)
  for _ = 1, redis.call('LLEN', log) do
    local first = redis.call('LINDEX', log, 0)
    if not first then return end
    local t = tonumber(string.match(first, '^%d+|(%d+)|'))
    if t and t < min_time then redis.call('LPOP', log) else return end
  end
end
"""

# KEYS: meta, log, mark (the idempotency key's, else the publish id's), and optionally the
# channel layer's group key of the topic (see rtdelivery.direct_groups.DirectGroups).
# ARGV: the parameters "<new epoch>|<publish id>|<max size>|<min time>|<meta ttl>|<log ttl>|
# <mark ttl>|<seen epoch>|<seen seq>|<group cutoff>" (one argument: each one costs the
# publisher CPU to send), the record without seq ("<time>|<type>|<data>"), and optionally
# (with the group key) the queueing parameters "<score>|<message cutoff>|<expiry>|
# <capacity>|<prefix length>|<channel key prefix>" (see QUEUE below).
# Returns, for a stored event (the group read after it was stored, so a process joining
# later finds the event in history; members whose score is below the group cutoff are
# removed first, as channels-redis does):
# - without queueing parameters: {epoch, seq, 0, group members...};
# - with them: {epoch, seq, 2, channels over capacity} once the event is queued on the
#   members' channels, or {epoch, seq, 3, error} when queueing failed (it is stored);
# or {epoch, seq, 1, time, type} of the first publish for a repeated idempotency key
# (nothing is written, nothing queued).
#
# The mark "<epoch>|<seq>|<publish id>|<time>|<type>" makes the append idempotent twice
# over: a retried append (its reply was lost) finds its own publish id and answers the
# seq it already got instead of storing the event twice (nor queueing it twice: the first
# run did); another publish with the same idempotency key finds another publish id and
# gets the first one's answer.
#
# QUEUE: the event queued on the group members' channels as channels-redis's
# RedisChannelLayer.group_send queues a message, for a layer with its default serializer
# (msgpack) and no encryption: per channel key (the layer's prefix and the channel's name
# up to its "!"), old messages dropped (score <= message cutoff), the message added unless
# the key holds `capacity` messages already, the key's TTL set. The message is the
# serializer's `<prefix length> bytes><msgpack map>`: the prefix is only stripped by
# receivers (this one is derived from the publish id and seq, so it differs per event
# like a random one); the map is backplane.event_message's fields without "id" (every
# receiver derives it from topic, epoch and seq with its cursor key) plus
# "__asgi_channel__", the list of the key's member channels. cmsgpack packs Lua strings as
# msgpack str (so receivers get str) and integral numbers as integers: epoch (< 2^48),
# seq and time (ms, < 2^53) are exact in a Lua double.
APPEND = (
    PRELUDE
    + """
local fresh, publish_id, size, min_time, meta_ttl, log_ttl, mark_ttl, seen_epoch, seen_seq,
      group_cutoff = string.match(ARGV[1],
  '^(%d+)|([%w.]+)|(%d+)|(%-?%d+)|(%d+)|(%d+)|(%d+)|(%d*)|(%d+)|(%-?%d+)$')
local mark = redis.call('GET', KEYS[3])
local e, s, pid, t, ty
if mark then
  e, s, pid, t, ty = string.match(mark, '^(%d+)|(%d+)|([%w.]+)|(%d+)|(.*)$')
  if e and pid ~= publish_id then return {e, tonumber(s), 1, t, ty} end
end
local function queue(epoch, seq, members)
  local score, cutoff, expiry, capacity, plen, channel_prefix = string.match(ARGV[3],
    '^([%d.]+)|(%-?%d+)|(%d+)|(%d+)|(%d+)|(.*)$')
  capacity, plen = tonumber(capacity), tonumber(plen)
  local keys, channels = {}, {}
  for _, member in ipairs(members) do
    local bang = string.find(member, '!', 1, true)
    local key = channel_prefix .. (bang and string.sub(member, 1, bang) or member)
    if not channels[key] then
      channels[key] = {}
      table.insert(keys, key)
    end
    table.insert(channels[key], member)
  end
  local t, ty = string.match(ARGV[2], '^(%d+)|([^|]*)|')
  local message = {
    type = 'rtdelivery.event', topic = string.match(KEYS[1], '{([^{}]*)}:m$'),
    epoch = tonumber(epoch), seq = seq, etype = ty,
    data = string.sub(ARGV[2], #t + #ty + 3), time = tonumber(t),
  }
  local prefix = ''
  while #prefix < plen do
    prefix = prefix .. redis.sha1hex(publish_id .. '|' .. seq .. '|' .. #prefix)
  end
  prefix = string.sub(prefix, 1, plen)
  local over = 0
  for _, key in ipairs(keys) do
    redis.call('ZREMRANGEBYSCORE', key, 0, cutoff)
    if redis.call('ZCOUNT', key, '-inf', '+inf') < capacity then
      message['__asgi_channel__'] = channels[key]
      redis.call('ZADD', key, score, prefix .. cmsgpack.pack(message))
      redis.call('EXPIRE', key, expiry)
    else
      over = over + 1
    end
  end
  return over
end
local function answer(epoch, seq, stored)
  if not KEYS[4] then return {epoch, seq, 0} end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], 0, group_cutoff)
  local out = redis.call('ZRANGE', KEYS[4], 0, -1)
  if ARGV[3] then
    if not stored or #out == 0 then return {epoch, seq, 2, 0} end
    -- The event is stored: a failed queueing is reported, not raised (like a failed
    -- group_send, subscribers get the event from history).
    local ok, over = pcall(queue, epoch, seq, out)
    if not ok then
      -- With the members: the publisher sends it the other way (receivers drop a copy
      -- that a part of this queueing may have left).
      local failed = {epoch, seq, 3, type(over) == 'table' and tostring(over.err) or tostring(over)}
      for _, member in ipairs(out) do table.insert(failed, member) end
      return failed
    end
    return {epoch, seq, 2, over}
  end
  table.insert(out, 1, 0)
  table.insert(out, 1, seq)
  table.insert(out, 1, epoch)
  return out
end
local epoch = load(KEYS[1], KEYS[2], fresh, seen_epoch, seen_seq, '', 0)
if not epoch then
  epoch = fresh
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0, 'run', run_id())
  redis.call('DEL', KEYS[2])  -- a leftover list (its record expired): its seqs would clash
end
redis.call('EXPIRE', KEYS[1], meta_ttl)
if e == epoch then return answer(epoch, tonumber(s), false) end  -- our own retry
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
t, ty = string.match(ARGV[2], '^(%d+)|([^|]*)|')
redis.call('SET', KEYS[3], epoch .. '|' .. seq .. '|' .. publish_id .. '|' .. t .. '|' .. ty,
           'EX', mark_ttl)
size = tonumber(size)
if size > 0 then
  redis.call('RPUSH', KEYS[2], seq .. '|' .. ARGV[2])
  redis.call('LTRIM', KEYS[2], -size, -1)
  trim_old(KEYS[2], tonumber(min_time))
  redis.call('EXPIRE', KEYS[2], log_ttl)
else
  redis.call('DEL', KEYS[2])
end
return answer(epoch, seq, true)
"""
)

# KEYS: meta, log. ARGV: new epoch, mode, since epoch, since seq, limit (-1: none),
# min time, meta ttl, seen epoch, seen seq. Modes:
# - 'peek' (heads): {epoch, head}, without touching the TTL or the list;
# - 'head': {epoch, head, first}; 'latest': the same and the last `limit` records;
# - 'after': {epoch, head, first, how, records...} where how is
#   'ok' (records after `since`), 'lost' (`since` is older than what is retained: no
#   records, the reader goes to the live end) or 'reset' (`since` is of another epoch:
#   the current epoch's records from its oldest retained).
# A topic with no record answers {} (and nothing is written).
READ = (
    PRELUDE
    + """
local mode = ARGV[2]
local since_epoch, since_seq = ARGV[3], tonumber(ARGV[4])
local epoch, head, reset = load(KEYS[1], KEYS[2], ARGV[1], ARGV[8], ARGV[9],
                                since_epoch, since_seq)
if not epoch then return {} end
if mode == 'peek' then return {epoch, head} end
redis.call('EXPIRE', KEYS[1], ARGV[7])
trim_old(KEYS[2], tonumber(ARGV[6]))
local first = head - redis.call('LLEN', KEYS[2]) + 1
local limit = tonumber(ARGV[5])
if mode == 'head' then
  return {epoch, head, first}
elseif mode == 'latest' then
  local out = {epoch, head, first}
  if limit <= 0 then return out end
  for _, r in ipairs(redis.call('LRANGE', KEYS[2], -limit, -1)) do table.insert(out, r) end
  return out
end
local how, after = 'ok', since_seq
if since_epoch == epoch then
  if since_seq < first - 1 then return {epoch, head, first, 'lost'} end
elseif not (since_epoch == '0' and since_seq == 0 and first == 1 and not reset) then
  -- (0, 0) is "before the first event": it continues with seq 1 of a topic's first
  -- epoch, unless that epoch replaced a lost one.
  how, after = 'reset', first - 1
end
local out = {epoch, head, first, how}
if limit == 0 then return out end
local start = after - first + 1
local stop = -1
if limit > 0 then stop = start + limit - 1 end
for _, r in ipairs(redis.call('LRANGE', KEYS[2], start, stop)) do table.insert(out, r) end
return out
"""
)


SHAS = {script: hashlib.sha1(script.encode()).hexdigest() for script in (APPEND, READ)}
