#!lua name=memstream_worker
-- Server side of the workers: ack-gated apply, replay writes, replay start, owner rebuild.
--
-- ms_apply is the exactly-once gate. For each event of a batch it runs XACK first and
-- runs the event's projection writes only if XACK returned 1, so a redelivered, reclaimed
-- or duplicated entry has no second effect. Every key it touches is declared, and all of
-- them carry the partition's hash tag.
--
-- Writes arrive as a small op language (see projections/ops.py). Ops are built to converge:
-- last-writer-wins fields carry a sortable log id as their version, ordered logs are
-- lexicographic sorted sets keyed by that id, counters commute, clears leave watermarks.

local VERSION_LEN = 24  -- 13-digit ms, "-", 10-digit sequence (projections/ops.py)

local function ver_of(s)
  return string.sub(s, 1, VERSION_LEN)
end

-- Internal functions refuse callers without the worker's rights. Redis checks every
-- command a function runs against the caller's ACL anyway; this check makes the refusal
-- explicit and happen before any write: the caller must be allowed to XACK the
-- partition's feed, which the producer and reader roles are not (docs/security.md).
local function require_worker(key, name)
  local tag = string.match(key or '', '^(ms:{%d+})')
  if tag == nil or not redis.acl_check_cmd('XACK', tag .. ':feed', 'v1', '0-1') then
    return redis.error_reply('NOPERM memstream: ' .. name .. ' needs the worker role '
      .. '(XACK on the partition feed); see docs/security.md')
  end
  return nil
end

local OPS = {}

-- Last writer wins: value stored as <version><payload>; older versions are dropped.
OPS.LWW = function(keys, op)
  local k, field, ver, value = keys[op[2]], op[3], op[4], op[5]
  local cur = redis.call('HGET', k, field)
  if (not cur) or ver_of(cur) < ver then
    redis.call('HSET', k, field, ver .. value)
  end
end

-- State of the call that is running ops: watermark fields already read, and the capped
-- logs still to trim. A message event used to HGET its session's watermark and trim its
-- log each time; a batch holds many messages of few sessions, so each watermark is read
-- once and each log is trimmed once, at the end of the call (end_batch). Keeping the
-- newest `cap` once at the end leaves the same members as after every add: both keep a
-- suffix in log order, and so does CLEAR, so they commute.
local batch = nil

local function begin_batch()
  batch = {marks = {}, caps = {}, capped = {}, z = {}, zkeys = {}, zn = 0, ztype = {},
    zdirect = {}, zadds = {}, zcut = {}}
end

local function trim(k, cap)
  redis.call('ZREMRANGEBYRANK', k, 0, -(cap + 1))
end

local flush_all_z  -- defined with OPS.ZMAX below

local function end_batch()
  flush_all_z()
  -- Before the trims: a session's life is walked over every member the call added, so a
  -- gap that a batch larger than the cap brings in is still seen.
  if batch.sessions then
    batch.sessions.run()  -- the session expiries the call deferred (OPS.SESSEXP)
  end
  for _, k in ipairs(batch.capped) do
    trim(k, batch.caps[k])
  end
  batch = nil
end

local function mark_id(wk, wfield)
  return wk .. '\0' .. wfield
end

-- The watermark field, read at most once per call (false when there is none).
local function watermark(wk, wfield)
  local id = mark_id(wk, wfield)
  local wm = batch.marks[id]
  if wm == nil then
    wm = redis.call('HGET', wk, wfield)
    batch.marks[id] = wm
  end
  return wm
end

local function defer_trim(k, cap)
  local pending = batch.caps[k]
  if pending == nil then
    batch.capped[#batch.capped + 1] = k
  elseif pending ~= cap then
    trim(k, pending)  -- another cap on the same log: keep each add's own cap exact
  end
  batch.caps[k] = cap
end

-- Append to a log-ordered sorted set (all scores 0, member starts with its version),
-- unless a clear watermark already covers it; keep only the newest `cap` members.
OPS.ZLOG = function(keys, op)
  local k, member, cap, wk, wfield = keys[op[2]], op[3], tonumber(op[4]), op[5], op[6]
  if wk ~= 0 then
    local wm = watermark(keys[wk], wfield)
    if wm and ver_of(member) <= wm then
      return
    end
  end
  if redis.call('ZADD', k, 0, member) == 1 then
    -- The members the call added: a session's life walks just their gaps (SESSEXP).
    local added = batch.zadds[k]
    if added == nil then
      added = {}
      batch.zadds[k] = added
    end
    added[#added + 1] = member  -- (not its version: no copy per message)
  end
  if cap > 0 then
    defer_trim(k, cap)
  end
end

-- Clear everything older than `ver` and raise the watermark so late arrivals stay cleared.
OPS.CLEAR = function(keys, op)
  local k, wk, wfield, ver = keys[op[2]], keys[op[3]], op[4], op[5]
  local wm = watermark(wk, wfield)
  if (not wm) or wm < ver then
    redis.call('HSET', wk, wfield, ver)
    batch.marks[mark_id(wk, wfield)] = ver
  end
  redis.call('ZREMRANGEBYLEX', k, '-', '(' .. ver)
  batch.zcut[k] = true  -- the set lost members: a session's life is walked again (SESSEXP)
end

-- Raise a watermark field to `ver` if it is lower.
OPS.HMAX = function(keys, op)
  local k, field, ver = keys[op[2]], op[3], op[4]
  local cur = redis.call('HGET', k, field)
  if (not cur) or cur < ver then
    redis.call('HSET', k, field, ver)
  end
end

OPS.HINCR = function(keys, op)
  redis.call('HINCRBY', keys[op[2]], op[3], op[4])
end

-- Keep the highest (GT) or lowest (LT) score per member: commutative max/min.
--
-- Deferred: a batch holds many events of few owners, and each message event carried a
-- ZMIN and a ZMAX on its owner's session index (two ZADDs per event, a fifth of the
-- call). Each key's ops are kept as one score per member (the max for GT, the min for
-- LT) and sent as one ZADD at the end of the call, or before any other op touches the
-- key (run_ops: touch_pending), so every op still sees the state it would have seen.
-- ZADD GT/LT of the max/min equals the sequence of ZADDs: GT and LT both add a missing
-- member and keep the max (min) of old and new. A key that switches between GT and LT
-- is flushed first, so even that mix keeps its order. A key of another type is not
-- deferred (TYPE, read once per key and call): its ZADD fails at once and dead-letters
-- the entry whose op it is, as before. Nor is a key once another op touched it between
-- its ZADDs in the call (zdirect): with a session_ttl_s every message's EXPATF does, and
-- flushing per message cost more than the plain ZADD.
local function zset_or_none(k)
  local ok = batch.ztype[k]
  if ok == nil then
    local t = redis.call('TYPE', k)['ok']
    ok = t == 'zset' or t == 'none'
    batch.ztype[k] = ok
  end
  return ok
end

local ZADD_CHUNK = 4000  -- score/member pairs per ZADD: unpack() has a C-stack limit

local function flush_z(k)
  local pend = batch.z[k]
  batch.z[k] = nil
  batch.zn = batch.zn - 1
  local args = {}
  for member, score in pairs(pend.scores) do
    args[#args + 1] = score
    args[#args + 1] = member
    if #args >= ZADD_CHUNK then
      redis.call('ZADD', k, pend.flag, unpack(args))
      args = {}
    end
  end
  if #args > 0 then
    redis.call('ZADD', k, pend.flag, unpack(args))
  end
end

-- pcall per key at the end, as for session expiries: the entries are acked already.
flush_all_z = function()
  if batch.zn == 0 then
    return
  end
  for _, k in ipairs(batch.zkeys) do
    if batch.z[k] then
      pcall(flush_z, k)
    end
  end
  batch.zkeys = {}
end

local function defer_z(k, flag, member, score)
  if batch.zdirect[k] then
    redis.call('ZADD', k, flag, score, member)
    return
  end
  local pend = batch.z[k]
  if pend ~= nil and pend.flag ~= flag then
    flush_z(k)
    pend = nil
  end
  if pend == nil then
    if not zset_or_none(k) then
      redis.call('ZADD', k, flag, score, member)  -- fails here, on its own entry
      return
    end
    pend = {flag = flag, scores = {}}
    batch.z[k] = pend
    batch.zn = batch.zn + 1
    batch.zkeys[#batch.zkeys + 1] = k
  end
  local cur = pend.scores[member]
  if cur == nil or (flag == 'GT' and score > cur) or (flag == 'LT' and score < cur) then
    pend.scores[member] = score
  end
end

OPS.ZMAX = function(keys, op)
  defer_z(keys[op[2]], 'GT', op[3], op[4])
end

OPS.ZMIN = function(keys, op)
  defer_z(keys[op[2]], 'LT', op[3], op[4])
end

-- Expire at an absolute time measured from the event, only ever extending it.
OPS.EXPAT = function(keys, op)
  local k, at = keys[op[2]], tonumber(op[3])
  local ttl = redis.call('PEXPIRETIME', k)
  if ttl == -2 then
    return
  end
  if ttl == -1 or ttl < at then
    redis.call('PEXPIREAT', k, at)
  end
end

-- EXPAT no earlier than a floor (a hash field holding 13-digit ms) that TTL extensions
-- raise: a write that lands after an extension still gets the extended life.
OPS.EXPATF = function(keys, op)
  local floor = tonumber(redis.call('HGET', keys[op[4]], op[5]) or '0') or 0
  OPS.EXPAT(keys, {'EXPATF', op[2], math.max(tonumber(op[3]), floor)})
end

-- A session's keys expire at their newest write's event time plus the session's TTL
-- (docs/ttl.md): the TTL a `session.started`/`session.ttl_set` chose (an LWW field, "d" for
-- the deployment default, else ms, 0 for never) or the deployment default (op[7], 0 for
-- none); never before the `ttl.extended` floor. Set exactly, not only extended, from merged
-- state (LWW choice, newest write, max floor), so a shorter TTL chosen later shortens it
-- and every delivery order ends with the same expiry. SESSEXP is for a session's history
-- (a log-ordered sorted set: the newest write is its last member); SESSEXPD for a hash of
-- LWW values (session data: the newest write is the highest version among the values).
--
-- Because the result depends on merged state only, computing it once per key at the end
-- of the call (end_batch) gives what computing it after every op would: a batch of many
-- messages of few sessions pays one choice read per session, not one per message, and
-- ops of one event may come in any order (the choice written after the expiry op).
-- The newest write of a session's data: the highest version among its LWW values (the
-- history's newest member comes with its life's walk, session_life).
local function data_newest_ms(k)
  local top = nil
  for _, v in ipairs(redis.call('HVALS', k)) do
    local ms = tonumber(string.sub(v, 1, 13))
    if ms and (top == nil or ms > top) then
      top = ms
    end
  end
  return top
end

-- A session's life boundary (docs/ttl.md, "A session's lives"): the version of the first
-- message of its current life. Its messages and TTL events (choices and extensions, kept
-- as `tl:<session>` by TLADD) are replayed in log order, from event times alone: after
-- each message the session lives to max(its time + the TTL then in effect, the floor); a
-- choice or an extension while it lives recomputes that (as SESSEXP does), one while it
-- is dead only counts for later messages; a message after that time starts a new life.
-- Readers hide what is older; nothing is pruned, since a late message can still bridge a
-- gap. A pure function of merged state (the capped set of messages, the set of TTL
-- events, the default and the cap), so any delivery order ends with the same record, the
-- key op[9] (expiring with the history: it is read only while the history exists):
--   "<boundary>|<newest>|<alive ms>|<ttl ms>|<floor ms>|<cap>|<n>|<default>"
-- (boundary "" when the life reaches past the capped window; alive 0: for good; n: the
-- TTL events before the newest message). It is the state after the newest message, so a
-- call that only added newer messages and no older TTL event walks just what it added.
local TL_WIDTH = 38  -- a TTL event: version, kind (c chosen ms, d default, e floor), 13 digits

local function member_ms(member)
  return tonumber(string.sub(member, 1, 13)) or 0
end

local function lives_to(last, ttl, floor)
  if ttl == 0 then
    return 0  -- for good
  end
  return math.max(last + ttl, floor)
end

local function alive_at(st, t)
  return st.alive == 0 or t <= st.alive
end

local function apply_ttl_event(st, event)
  local live = st.last ~= nil and alive_at(st, member_ms(event))
  local kind, value = string.sub(event, VERSION_LEN + 1, VERSION_LEN + 1),
    tonumber(string.sub(event, VERSION_LEN + 2)) or 0
  if kind == 'e' then
    st.floor = math.max(st.floor, value)
  elseif kind == 'd' then
    st.ttl = st.default
  else
    st.ttl = value
  end
  if live then
    st.alive = lives_to(st.last, st.ttl, st.floor)
  end
end

-- The TTL events of `tl` (a TLADD field value), in log order.
local function ttl_events(tl)
  local out = {}
  for at = 1, #(tl or ''), TL_WIDTH do
    out[#out + 1] = string.sub(tl, at, at + TL_WIDTH - 1)
  end
  return out
end

-- Replays `members` (in log order) and the TTL `events` from index `e` on, on state
-- `st`; returns the version of the newest member that started a life (nil if none) and
-- the index of the first event after the newest member.
local function replay_life(st, members, events, e)
  local started = nil
  for _, member in ipairs(members) do
    local v = ver_of(member)
    while events[e] and ver_of(events[e]) < v do
      apply_ttl_event(st, events[e])
      e = e + 1
    end
    local t = member_ms(member)
    if st.last ~= nil and not alive_at(st, t) then
      started = v
    end
    st.last, st.alive = t, lives_to(t, st.ttl, st.floor)
  end
  return started, e
end

local function parse_life(rec)
  local b, n, alive, ttl, floor, cap, count, default = string.match(rec or '',
    '^([^|]*)|([^|]*)|(%d+)|(%d+)|(%d+)|(%d+)|(%d+)|(%d+)$')
  if b == nil then
    return nil
  end
  return {b = b, n = n, alive = tonumber(alive), ttl = tonumber(ttl), floor = tonumber(floor),
    cap = tonumber(cap), count = tonumber(count), default = tonumber(default)}
end

-- The state, boundary and walked members of a call that only added members after the
-- record's newest `n` and no TTL event before it; nil when the record cannot be
-- continued (another cap or default; an older member or TTL event added; members
-- cleared; `n` gone: the key expired and a new life began). Every member newer than `n`
-- was added by this call (each call that adds one ends with this walk), so the walk
-- reads the members the call recorded (ZLOG) instead of reading the set back.
local function continued_life(k, life, events, default, cap)
  if life == nil or life.n == '' or life.cap ~= cap or life.default ~= default
      or batch.zcut[k] then
    return nil
  end
  local n = life.n
  local e = life.count + 1
  local last_seen = events[life.count]
  if (life.count > 0 and (last_seen == nil or ver_of(last_seen) >= n))
      or (events[e] and ver_of(events[e]) < n) then
    return nil  -- the TTL events before `n` are not those the record was walked with
  end
  local walk, sorted = {}, true
  for _, member in ipairs(batch.zadds[k] or {}) do
    if member < n then
      return nil
    end
    sorted = sorted and (walk[#walk] == nil or member > walk[#walk])
    walk[#walk + 1] = member
  end
  local first = redis.call('ZRANGE', k, '[' .. n, '+', 'BYLEX', 'LIMIT', 0, 1)[1]
  if first == nil or ver_of(first) ~= n then
    return nil
  end
  if not sorted then
    table.sort(walk)
  end
  local st = {ttl = life.ttl, floor = life.floor, alive = life.alive, last = member_ms(n),
    default = default}
  local newest = walk[#walk] or first
  local started, next_e = replay_life(st, walk, events, e)
  if not walk[1] then
    next_e = e  -- nothing added: the state stays the one after `n`
  end
  return {st = st, boundary = started or life.b, newest = newest, e = next_e}
end

-- The boundary from the whole set: the newest member that started a life; else its
-- oldest member while the set is below its cap (nothing older is of this life: it was
-- cleared or expired); else, a full set: the record's boundary if still at or below the
-- set (found when the gap was in sight, before the cap trimmed it), or "" (the life
-- reaches past the window).
local function walked_life(members, events, life, default, cap, first_ttl)
  local st = {ttl = first_ttl, floor = 0, alive = nil, last = nil, default = default}
  local started, e = replay_life(st, members, events, 1)
  local oldest = ver_of(members[1])
  local boundary = ''
  if started then
    boundary = started
  elseif cap == 0 or #members < cap then
    boundary = oldest
  elseif life and life.b ~= '' and life.b <= oldest and life.n >= oldest then
    boundary = life.b
  end
  return {st = st, boundary = boundary, newest = members[#members], e = e}
end

-- The ms of the newest member of the history `k` (nil when none) and its new life record
-- (`rec` the record in `lk`, `tl` the session's TTL events, `chosen_ttl` the LWW choice's
-- TTL or nil).
local function session_life(k, lk, rec, tl, default, cap, chosen_ttl)
  local life = parse_life(rec)
  local events = ttl_events(tl)
  -- The TTL before the first event: the default, or the LWW choice of a session that
  -- chose before TTL events were kept (its choice has no event; every later one does).
  local first_ttl = default
  if chosen_ttl then
    first_ttl = chosen_ttl
    for _, event in ipairs(events) do
      if string.sub(event, VERSION_LEN + 1, VERSION_LEN + 1) ~= 'e' then
        first_ttl = default
        break
      end
    end
  end
  local found = continued_life(k, life, events, default, cap)
  if found == nil then
    local members = redis.call('ZRANGE', k, 0, -1)
    if #members == 0 then
      if rec then
        redis.call('DEL', lk)  -- no messages: the next life starts at its first
      end
      return nil
    end
    found = walked_life(members, events, life, default, cap, first_ttl)
  end
  local st = found.st
  return member_ms(found.newest), table.concat({found.boundary, ver_of(found.newest),
    st.alive, st.ttl, st.floor, cap, found.e - 1, default}, '|')
end

local function session_expire(keys, op)
  local k, ttl = keys[op[2]], tonumber(op[7])
  local history = op[1] == 'SESSEXP'
  local chosen, tl, rec
  if history then  -- the choice and the TTL events in one read
    local got = redis.call('HMGET', keys[op[3]], op[4], 'tl:' .. op[4])
    chosen, tl = got[1], got[2]
  else
    chosen = redis.call('HGET', keys[op[3]], op[4])
  end
  if chosen then
    local v = string.sub(chosen, VERSION_LEN + 1)
    if v ~= 'd' then
      ttl = tonumber(v) or ttl
    end
  end
  local floor = 0
  if ttl ~= 0 then
    floor = tonumber(redis.call('HGET', keys[op[5]], op[6]) or '0') or 0
  end
  local newest, life
  local lk = history and keys[op[9]]
  if history and (chosen or ttl ~= 0) then  -- else no TTL was ever in effect: one life
    newest, life = session_life(k, lk, redis.call('GET', lk), tl, tonumber(op[7]), op[8],
      chosen and ttl)
  elseif not history and ttl ~= 0 then
    newest = data_newest_ms(k)
  end
  if ttl == 0 then
    if chosen then  -- a choice of "no TTL" (or of a default that is none) undoes an expiry
      redis.call('PERSIST', k)
    end
    if life then
      redis.call('SET', lk, life)  -- for good, as the history
    end
    return
  end
  if not newest then
    return
  end
  local at = math.max(newest + ttl, floor)
  redis.call('PEXPIREAT', k, at)
  if life then
    redis.call('SET', lk, life, 'PXAT', at)  -- needed while the history lives, no longer
  end
end

-- Add the fixed-width `entry` to the sorted entries kept in one hash field (a session's
-- TTL events: projections/history.py), once: a set union, so any order ends the same.
OPS.TLADD = function(keys, op)
  local k, field, entry = keys[op[2]], op[3], op[4]
  local cur = redis.call('HGET', k, field) or ''
  local at = 1
  while at <= #cur do
    local e = string.sub(cur, at, at + TL_WIDTH - 1)
    if e == entry then
      return
    elseif e > entry then
      break
    end
    at = at + TL_WIDTH
  end
  redis.call('HSET', k, field, string.sub(cur, 1, at - 1) .. entry .. string.sub(cur, at))
end

-- pcall: a key of the wrong type (its own writes failed too) must not fail the whole call
-- after its entries were acked; the other keys still get their expiry.
local function run_session_expiries(pending)
  for _, k in ipairs(pending.order) do
    pcall(session_expire, pending.keys, pending.ops[k])
  end
end

-- The pending expiries of this call, one per key (the last op naming it; every op on one
-- key carries the same choice, floor and default). One KEYS table serves a whole call.
local function defer_session_expiry(keys, op)
  local k = keys[op[2]]
  local pending = batch.sessions
  if pending == nil then
    pending = {order = {}, ops = {}, keys = keys}
    pending.run = function() run_session_expiries(pending) end
    batch.sessions = pending
  end
  if pending.ops[k] == nil then
    pending.order[#pending.order + 1] = k
  end
  pending.ops[k] = op
end

OPS.SESSEXP = defer_session_expiry
OPS.SESSEXPD = defer_session_expiry

-- Message vectors (projections/vectors.py) keep their expiry at the head of the payload
-- (int64 ms, little-endian, after the version) and as their live-set score. A session's
-- `ttl.extended` must reach them in any order: VFLOOR raises a vector just written to
-- the session's floor, VEXT raises every vector of the session when an extension comes.
-- A session's chosen TTL longer than the default must too (docs/ttl.md): VFLOOR also
-- raises a vector to its own time + the longest TTL the session chose so far, VTTL every
-- vector of the session when a choice comes. All only raise (max), so they commute with
-- each other and with the writes.
local function raise_vector(hk, zk, field, value, at)
  if #value < VERSION_LEN + 12 then
    return  -- a tombstone
  end
  if struct.unpack('<i8', value, VERSION_LEN + 1) < at then
    redis.call('HSET', hk, field, string.sub(value, 1, VERSION_LEN) .. struct.pack('<i8', at)
      .. string.sub(value, VERSION_LEN + 9))
    redis.call('ZADD', zk, 'XX', 'GT', at, field)
  end
end

local function extend_keys(keys, op, at, last)
  for i = 2, last do
    OPS.EXPAT(keys, {'EXPAT', op[i], at})
  end
end

-- The time a message vector `<session>:<version>` lives to under a chosen TTL: its
-- version's ms (the log time SESSEXP counts the history's life from) + `ttl` ms.
local function chosen_at(field, ttl)
  return (tonumber(string.sub(field, -VERSION_LEN, -12)) or 0) + ttl
end

-- VFLOOR hkey zkey metakey ckey field floor_key floor_field choice_key choice_field: the
-- choice field holds the longest TTL (13-digit ms) the session chose (HMAX), absent if
-- none was longer than the default.
OPS.VFLOOR = function(keys, op)
  local at = tonumber(redis.call('HGET', keys[op[7]], op[8]) or '0') or 0
  local ttl = tonumber(redis.call('HGET', keys[op[9]], op[10]) or '0') or 0
  if ttl > 0 then
    at = math.max(at, chosen_at(op[6], ttl))
  end
  local value = at > 0 and redis.call('HGET', keys[op[2]], op[6])
  if value then
    raise_vector(keys[op[2]], keys[op[3]], op[6], value, at)
    extend_keys(keys, op, at, 5)
  end
end

-- VEXT hkey zkey metakey prefix at count_field: every live vector whose id starts with
-- `prefix` (`<session>:`), found through the live set (scores are expiries). The count
-- field rises once per extension, whatever changed, so cached matrices refetch and the
-- count stays order-free.
OPS.VEXT = function(keys, op)
  local hk, zk, prefix, at = keys[op[2]], keys[op[3]], op[5], tonumber(op[6])
  for _, field in ipairs(redis.call('ZRANGE', zk, 0, '(' .. at, 'BYSCORE')) do
    if string.sub(field, 1, #prefix) == prefix then
      local value = redis.call('HGET', hk, field)
      if value then
        raise_vector(hk, zk, field, value, at)
      end
    end
  end
  redis.call('HINCRBY', keys[op[4]], op[7], 1)
  extend_keys(keys, op, at, 4)
end

-- VTTL hkey zkey metakey ckey prefix ttl count_field: a session chose a TTL (`ttl` ms)
-- longer than the default: every live vector whose id starts with `prefix` lives to its
-- own version's ms + ttl at least, and the keys to the latest of those. Each vector has
-- its own time, so the whole live set is read (no score bound): one pass per choice,
-- only for choices longer than the default. Counted as VEXT is, whatever changed.
OPS.VTTL = function(keys, op)
  local hk, zk, prefix, ttl = keys[op[2]], keys[op[3]], op[6], tonumber(op[7])
  local last = 0
  for _, field in ipairs(redis.call('ZRANGE', zk, 0, -1)) do
    if string.sub(field, 1, #prefix) == prefix then
      local value = redis.call('HGET', hk, field)
      if value then
        local at = chosen_at(field, ttl)
        raise_vector(hk, zk, field, value, at)
        last = math.max(last, at)
      end
    end
  end
  -- Extended before the count: a key made only now (the count, the change stream) gets
  -- its life from the caller (a time of this choice), never one already past.
  if last > 0 then
    extend_keys(keys, op, last, 5)
  end
  redis.call('HINCRBY', keys[op[4]], op[8], 1)
end

-- VCHG ckey hkey cap what ref version: one change of the vector hash `hkey`, as the
-- entry {what = ref} of its change stream (what 'r': that ref was written; 'x': every
-- vector whose ref starts with it was raised by VEXT), for the event at `version`. Each
-- comes with one count in the meta hash's n:<space>, so a reader that cached the matrix
-- up to an entry fetches only the refs after it (projections/vector_index.py). The id
-- is <position>-<digest>: the digest chains the previous entry's with this change, so
-- an id names the whole sequence of writes up to it, and a reader's entry is found only
-- in a stream that went through the same writes (a forget or a rebuild makes another
-- sequence; the same one, as a rebuild in the same order makes, describes the same hash,
-- and gets the same ids). Not state: ids follow apply order, and the gate makes the
-- entries exactly one per applied write. Capped near the hash's size (at least 256), so
-- it never outgrows the vectors it names; a reader whose entry was trimmed loads the hash.
OPS.VCHG = function(keys, op)
  local ck = keys[op[2]]
  local cap = math.max(256, math.min(tonumber(op[4]), redis.call('HLEN', keys[op[3]])))
  local last = redis.call('XREVRANGE', ck, '+', '-', 'COUNT', 1)[1]
  local n, prev = '0', '0'
  if last then
    n, prev = string.match(last[1], '^(%d+)%-(%d+)$')
  end
  local digest = redis.sha1hex(prev .. '\0' .. op[5] .. '\0' .. op[6] .. '\0' .. op[7])
  local id = string.format('%.0f-%.0f', tonumber(n) + 1, tonumber(string.sub(digest, 1, 13), 16))
  redis.call('XADD', ck, 'MAXLEN', '~', cap, id, op[5], op[6])
end

OPS.DEL = function(keys, op)
  redis.call('DEL', keys[op[2]])
  batch.marks = {}  -- the key may have been a watermark hash: read them again
end

OPS.XADD = function(keys, op)
  local fields = {}
  for i = 3, #op do
    fields[#fields + 1] = op[i]
  end
  redis.call('XADD', keys[op[2]], 'MAXLEN', '~', 100000, '*', unpack(fields))
end

OPS.SPUB = function(keys, op)
  redis.call('SPUBLISH', keys[op[2]], op[3])
end

-- World-model evidence (projections/world.py): check it against the scenario's stored
-- configuration, then add the weight to every node of the path, or dead-letter it. The
-- check must run here because projections never read Redis. Layout (1-based):
-- [2] conf [3] dlq [4] stats [5] node index [6..21] node keys, root first (0 = unused)
-- [22] scenario [23] variable [24] outcome [25] amount [26] ts_ms [27] now_ms
-- [28] owner [29] log_id [30] group [31..] index members, root first (one per node).
-- The feed entry whose ops are running (ms_apply sets it; '' under ms_write): an op that
-- dead-letters names it, so Reader.wait(receipt) sees the rejection.
local current_feed_id = ''

local function world_reject(keys, op, reason)
  redis.call('XADD', keys[op[3]], 'MAXLEN', '~', 100000, '*',
    'feed_id', current_feed_id, 'owner', op[28], 'log_id', op[29], 'group', op[30],
    'deliveries', '1', 'reason', 'rejected by the world model: ' .. reason)
  redis.call('HINCRBY', keys[op[4]], 'dlq', 1)
end

OPS.WOBS = function(keys, op)
  local scenario, var, outcome = op[22], op[23], op[24]
  local amount, ts, now = op[25], tonumber(op[26]), tonumber(op[27])
  local depth = #op - 30
  local raw = redis.call('HGET', keys[op[2]], 'c')
  -- No configuration yet (it may still be in flight): count; reads show only configured
  -- outcomes, so nothing unconfigured ever reaches a posterior.
  local levels, ttl = depth, {}
  if raw then
    local conf = cmsgpack.unpack(string.sub(raw, VERSION_LEN + 1))
    levels, ttl = conf.levels, conf.ttl
    local outcomes = conf.variables[var]
    if depth > levels then
      return world_reject(keys, op, 'path: has ' .. depth .. ' levels, scenario ' .. scenario
        .. ' is configured with ' .. levels)
    end
    if outcomes == nil then
      return world_reject(keys, op, 'variable: ' .. var .. ' is not configured in scenario '
        .. scenario)
    end
    local known = false
    for _, o in ipairs(outcomes) do
      if o == outcome then known = true end
    end
    if not known then
      return world_reject(keys, op, 'outcome: ' .. outcome .. ' is not one of the outcomes of '
        .. var .. ' in scenario ' .. scenario .. ' (' .. table.concat(outcomes, ', ') .. ')')
    end
  end
  -- The index expires only when every level does, after the longest-lived one.
  local index_ttl = 0
  for l = 1, levels do
    local t = tonumber(ttl[l] or 0)
    if t == 0 then index_ttl = -1 break end
    if t > index_ttl then index_ttl = t end
  end
  local field = var .. ':' .. outcome
  for d = 1, depth do
    local t = tonumber(ttl[levels - d + 1] or 0)
    -- An expired memory is not brought back (replay), as ApplyContext.expired does.
    if t == 0 or ts + t * 1000 > now then
      redis.call('HINCRBY', keys[op[5 + d]], field, amount)
      redis.call('ZADD', keys[op[5]], 'GT', ts, op[30 + d])
      if t > 0 then
        OPS.EXPAT(keys, {'EXPAT', op[5 + d], ts + t * 1000})
      end
    end
  end
  if index_ttl > 0 then
    OPS.EXPAT(keys, {'EXPAT', op[5], ts + index_ttl * 1000})
  end
end

-- Last writer wins on a hash field, mirrored in a sorted set: when this version wins (or
-- ties: one event writes several mirrors) the member gets the score, or leaves the set
-- for a tombstone (score ''). A sentinel member '' at -1 keeps the set in existence
-- whatever the order, so a later EXPAT on it converges. Scores arrive as decimal
-- strings: a Lua number would round large integers.
OPS.LWWZ = function(keys, op)
  local k, field, ver, value = keys[op[2]], op[3], op[4], op[5]
  local zk, member, score = keys[op[6]], op[7], op[8]
  redis.call('ZADD', zk, 'NX', -1, '')
  local cur = redis.call('HGET', k, field)
  if cur and ver_of(cur) > ver then
    return
  end
  redis.call('HSET', k, field, ver .. value)
  if score == '' then
    redis.call('ZREM', zk, member)
  else
    redis.call('ZADD', zk, score, member)
  end
end

-- Drop members whose expiry (score / scale, in ms) is past by the server clock, at most
-- 100 per call: the amortised cleanup Redis does for whole keys, for members of live
-- keys. Members that go also leave an optional hash and an optional second set. Scores
-- at or below 0 (sentinels) are never pruned.
OPS.PRUNE = function(keys, op)
  local zk, scale, hk, zk2 = keys[op[2]], tonumber(op[3]), op[4], op[5]
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local bound = '(' .. string.format('%.0f', now * scale)
  local gone = redis.call('ZRANGEBYSCORE', zk, '(0', bound, 'LIMIT', 0, 100)
  if #gone == 0 then
    return
  end
  redis.call('ZREM', zk, unpack(gone))
  if hk ~= 0 then
    redis.call('HDEL', keys[hk], unpack(gone))
  end
  if zk2 ~= 0 then
    redis.call('ZREM', keys[zk2], unpack(gone))
  end
end

-- Owner-pointer check (PTR, first op of an entry whose feed id is not its log id): the
-- pointer is applied only when it was re-queued by `memstream dlq retry` (a one-shot
-- record, consumed here) or predates the own-pointer rule (conf field own_from).
-- [2] retry record key [3] conf key [4] feed id [5] log id. Checked in validate_ops.
OPS.PTR = function(keys, op)
  redis.call('DEL', keys[op[2]])
end

local touch_pending  -- defined with KEY_ARGS below

-- The one key position of the frequent ops whose deferred ZADDs (OPS.ZMAX) must be sent
-- before the op runs; false for ops that need none (SESSEXP runs at the end of the call,
-- after every ZADD; a channel is no key). Every other op goes through touch_pending.
-- A lookup per op: checking every key of every op cost more than the ZADDs it saved.
-- EXPATF is here because with a session_ttl_s every message has one on each key of its
-- session index; through touch_pending it also cleared the TYPE memo, one TYPE per op.
local Z_TOUCH = {
  ZMAX = false, ZMIN = false, SPUB = false, SESSEXP = false, SESSEXPD = false,
  ZLOG = 2, HINCR = 2, LWW = 2, EXPAT = 2, EXPATF = 2,
}

local function run_ops(keys, ops)
  for _, op in ipairs(ops) do
    local name = op[1]
    if batch.zn > 0 then
      local at = Z_TOUCH[name]
      if at then
        local k = keys[op[at]]
        if batch.z[k] then
          flush_z(k)
          batch.zdirect[k] = true  -- touched between its ZADDs: deferring it gains nothing
        end
      elseif at == nil then
        touch_pending(keys, op, name)
      end
    end
    OPS[name](keys, op)
  end
end

-- Validation: every op's arguments are checked before the first write of its entry, so
-- an op can never fail half-way for a reason its arguments show (docs/security.md).
local MAX_INT = 9007199254740992  -- 2^53: integers above it are not exact as Lua numbers
local MAX_SUM = 9.2e18  -- below 2^63 (HINCRBY's int64) with room for the double's rounding

local function is_int(n, lo, hi)
  return type(n) == 'number' and n == math.floor(n) and n >= lo and n <= hi
end

-- A finite number within MAX_INT (NaN fails n == n).
local function is_num(n)
  return type(n) == 'number' and n == n and math.abs(n) <= MAX_INT
end

local function is_str(s)
  return type(s) == 'string'
end

local function is_ver(s)
  return type(s) == 'string' and #s == VERSION_LEN and string.match(s, '^%d+%-%d+$') ~= nil
end

-- A stream id as two fixed-width digit strings, so ids of any size compare exactly.
local function id_key(id)
  local ms, seq = string.match(id or '', '^(%d+)%-(%d+)$')
  if ms == nil or #ms > 20 or #seq > 20 then
    return nil
  end
  return string.rep('0', 20 - #ms) .. ms .. '-' .. string.rep('0', 20 - #seq) .. seq
end

local KEY_ARGS = {
  LWW = {2}, ZLOG = {2}, CLEAR = {2, 3}, HMAX = {2}, HINCR = {2}, ZMAX = {2}, ZMIN = {2},
  EXPAT = {2}, EXPATF = {2, 4}, DEL = {2}, XADD = {2}, SPUB = {2}, LWWZ = {2, 6},
  PRUNE = {2}, PTR = {2, 3}, SESSEXP = {2, 3, 5, 9}, TLADD = {2},
}
local OPTIONAL_KEYS = { ZLOG = {5}, PRUNE = {4, 5} }

-- Before a less frequent op runs (not in Z_TOUCH), the deferred ZADDs of every key it
-- names are sent (OPS.ZMAX); one without a KEY_ARGS entry (WOBS, one added later) sends
-- them all. Such an op may change a key's type (DEL, say), so it clears the TYPE memo.
local function touch_key(k)
  if batch.z[k] then
    flush_z(k)
    batch.zdirect[k] = true
  end
  batch.ztype[k] = nil
end

touch_pending = function(keys, op, name)
  local args = KEY_ARGS[name]
  if args == nil then
    flush_all_z()
    batch.ztype = {}
    return
  end
  for _, i in ipairs(args) do
    touch_key(keys[op[i]])
  end
  local optional = OPTIONAL_KEYS[name]
  if optional then
    for _, i in ipairs(optional) do
      if op[i] ~= 0 then
        touch_key(keys[op[i]])
      end
    end
  end
end
local ARITY = {
  LWW = 5, ZLOG = 6, CLEAR = 5, HMAX = 4, HINCR = 4, ZMAX = 4, ZMIN = 4, EXPAT = 3,
  EXPATF = 5, DEL = 2, SPUB = 3, LWWZ = 8, PRUNE = 5, PTR = 5, SESSEXP = 9, TLADD = 4,
}

local function key_ok(keys, i)
  return is_int(i, 1, #keys)
end

-- Room for `n` more in a counter field: HINCRBY fails on int64 overflow. Returns nil, or
-- the reason there is none (a key of the wrong type or a non-integer field, too).
local function counter_room(keys, pending, ki, field, n)
  local id = ki .. '\0' .. field
  local cur = pending[id]
  if cur == nil then
    local raw = redis.pcall('HGET', keys[ki], field)
    if type(raw) == 'table' and raw.err then
      return string.sub(raw.err, 1, 120)
    end
    cur = raw and tonumber(raw) or 0
    if cur == nil then
      return 'counter ' .. string.sub(field, 1, 64) .. ' holds no integer'
    end
  end
  cur = cur + n
  pending[id] = cur
  if math.abs(cur) >= MAX_SUM then
    return 'counter ' .. string.sub(field, 1, 64) .. ' would leave the int64 range'
  end
  return nil
end

local CHECK = {}
CHECK.LWW = function(op) return is_str(op[3]) and is_ver(op[4]) and is_str(op[5]) end
CHECK.ZLOG = function(op)
  return is_str(op[3]) and #op[3] >= VERSION_LEN and is_int(op[4], 0, 2147483647)
    and is_str(op[6])
end
CHECK.CLEAR = function(op) return is_str(op[4]) and is_ver(op[5]) end
CHECK.HMAX = function(op) return is_str(op[3]) and is_str(op[4]) end
CHECK.TLADD = function(op)
  local e = op[4]
  return is_str(op[3]) and type(e) == 'string' and #e == TL_WIDTH and is_ver(string.sub(e, 1, 24))
    and string.find('cde', string.sub(e, 25, 25), 1, true) ~= nil
    and string.match(string.sub(e, 26), '^%d+$') ~= nil
end
CHECK.HINCR = function(op) return is_str(op[3]) and is_int(op[4], -MAX_INT, MAX_INT) end
CHECK.ZMAX = function(op) return is_str(op[3]) and is_num(op[4]) end
CHECK.ZMIN = CHECK.ZMAX
CHECK.EXPAT = function(op) return is_int(op[3], 0, MAX_INT) end
CHECK.EXPATF = function(op) return is_int(op[3], 0, MAX_INT) and is_str(op[5]) end
CHECK.SESSEXPD = function(op)
  return is_str(op[4]) and is_str(op[6]) and is_int(op[7], 0, MAX_INT)
end
CHECK.SESSEXP = function(op)  -- SESSEXPD's and the history's cap (the life's walk)
  return CHECK.SESSEXPD(op) and is_int(op[8], 0, 2147483647)
end
KEY_ARGS.SESSEXPD, ARITY.SESSEXPD = {2, 3, 5}, 7

CHECK.VFLOOR = function(op)
  return is_str(op[6]) and #op[6] > VERSION_LEN and is_str(op[8]) and is_str(op[10])
end
CHECK.VEXT = function(op)
  return is_str(op[5]) and #op[5] > 0 and is_int(op[6], 0, MAX_INT) and is_str(op[7])
end
CHECK.VTTL = function(op)
  return is_str(op[6]) and #op[6] > 0 and is_int(op[7], 1, MAX_INT) and is_str(op[8])
end
KEY_ARGS.VFLOOR, ARITY.VFLOOR = {2, 3, 4, 5, 7, 9}, 10
KEY_ARGS.VEXT, ARITY.VEXT = {2, 3, 4}, 7
KEY_ARGS.VTTL, ARITY.VTTL = {2, 3, 4, 5}, 8
CHECK.VCHG = function(op)
  return is_int(op[4], 1, 2147483647) and (op[5] == 'r' or op[5] == 'x') and is_str(op[6])
    and is_ver(op[7])
end
KEY_ARGS.VCHG, ARITY.VCHG = {2, 3}, 7
CHECK.DEL = function(op) return true end
CHECK.XADD = function(op)
  if #op < 4 or #op % 2 ~= 0 then return false end
  for i = 3, #op do
    if not (is_str(op[i]) or is_int(op[i], -MAX_INT, MAX_INT)) then return false end
  end
  return true
end
CHECK.SPUB = function(op) return is_str(op[3]) end
CHECK.LWWZ = function(op)
  local score = op[8]
  return is_str(op[3]) and is_ver(op[4]) and is_str(op[5]) and is_str(op[7]) and is_str(score)
    and (score == '' or (#score <= 32 and is_num(tonumber(score))))
end
CHECK.PRUNE = function(op) return is_int(op[3], 1, 1048576) end
CHECK.PTR = function(op) return is_str(op[4]) and is_str(op[5]) end
CHECK.WOBS = function(op, keys)
  local depth = #op - 30
  if depth < 1 or depth > 16 then return false end
  for i = 2, 5 do
    if not key_ok(keys, op[i]) then return false end
  end
  for d = 1, 16 do
    local i = op[5 + d]
    if d <= depth then
      if not key_ok(keys, i) then return false end
    elseif i ~= 0 then
      return false
    end
  end
  for _, i in ipairs({22, 23, 24, 28, 29, 30}) do
    if not is_str(op[i]) then return false end
  end
  for i = 31, #op do
    if not is_str(op[i]) then return false end
  end
  return is_int(op[25], 1, MAX_INT) and is_int(op[26], 0, MAX_INT) and is_int(op[27], 0, MAX_INT)
end

local NO_KEYS = {}

local function where(n, name)
  return 'op ' .. n .. ' (' .. tostring(name):sub(1, 16) .. ')'
end

-- The reason op `n` breaks its name's shape rules (arity, declared keys, CHECK), or nil.
local function shape_reason(keys, op, n, name)
  if CHECK[name] == nil then
    return where(n, name) .. ': unknown op'
  end
  if ARITY[name] and #op ~= ARITY[name] then
    return where(n, name) .. ': takes ' .. ARITY[name] .. ' arguments, got ' .. #op
  end
  for _, i in ipairs(KEY_ARGS[name] or NO_KEYS) do
    if not key_ok(keys, op[i]) then
      return where(n, name) .. ': argument ' .. (i - 1) .. ' is not a declared key'
    end
  end
  for _, i in ipairs(OPTIONAL_KEYS[name] or NO_KEYS) do
    if op[i] ~= 0 and not key_ok(keys, op[i]) then
      return where(n, name) .. ': argument ' .. (i - 1) .. ' is not a declared key'
    end
  end
  if not CHECK[name](op, keys) then
    return where(n, name) .. ': an argument is out of its range (see projections/op_checks.py)'
  end
  return nil
end

-- Shape checks of the ops every message event carries, inlined: true only when
-- shape_reason would find nothing (false sends the op through shape_reason, which
-- names the reason). Going through the generic tables for each op was half of
-- validating a batch, and validating a third of the whole call.
local function key_in(k, nkeys)
  return type(k) == 'number' and k >= 1 and k <= nkeys and k % 1 == 0
end

local FAST = {}
FAST.ZLOG = function(op, nkeys)
  local member, cap, wk = op[3], op[4], op[5]
  return #op == 6 and key_in(op[2], nkeys) and (wk == 0 or key_in(wk, nkeys))
    and type(member) == 'string' and #member >= VERSION_LEN
    and type(cap) == 'number' and cap >= 0 and cap <= 2147483647 and cap % 1 == 0
    and type(op[6]) == 'string'
end
FAST.ZMAX = function(op, nkeys)
  local score = op[4]
  return #op == 4 and key_in(op[2], nkeys) and type(op[3]) == 'string'
    and type(score) == 'number' and score >= -MAX_INT and score <= MAX_INT
end
FAST.ZMIN = FAST.ZMAX
-- One per message (history's expiry): the generic check cost more than the op.
FAST.SESSEXP = function(op, nkeys)
  local default, cap = op[7], op[8]
  return #op == 9 and key_in(op[2], nkeys) and key_in(op[3], nkeys) and key_in(op[5], nkeys)
    and key_in(op[9], nkeys)
    and type(op[4]) == 'string' and type(op[6]) == 'string'
    and type(default) == 'number' and default >= 0 and default <= MAX_INT and default % 1 == 0
    and type(cap) == 'number' and cap >= 0 and cap <= 2147483647 and cap % 1 == 0
end
FAST.SPUB = function(op, nkeys)
  return #op == 3 and key_in(op[2], nkeys) and type(op[3]) == 'string'
end
FAST.HINCR = function(op, nkeys)
  local by = op[4]
  return #op == 4 and key_in(op[2], nkeys) and type(op[3]) == 'string'
    and type(by) == 'number' and by >= -MAX_INT and by <= MAX_INT and by % 1 == 0
end

-- The reason an entry's ops cannot run, or nil when every one of them can.
local function validate_ops(keys, ops, feed_id)
  if type(ops) ~= 'table' then
    return 'ops must be a list'
  end
  local pending = nil  -- counter fields seen so far (counter_room), made on first use
  local nkeys = #keys
  for n, op in ipairs(ops) do
    local name = type(op) == 'table' and op[1]
    local fast = FAST[name]
    if not (fast and fast(op, nkeys)) then
      local reason = shape_reason(keys, op, n, name)
      if reason ~= nil then
        return reason
      end
    end
    local why = nil
    if name == 'HINCR' then
      pending = pending or {}
      why = counter_room(keys, pending, op[2], op[3], op[4])
    elseif name == 'WOBS' then
      pending = pending or {}
      for d = 1, #op - 30 do
        why = why or counter_room(keys, pending, op[5 + d], op[23] .. ':' .. op[24], op[25])
      end
    end
    if why ~= nil then
      return where(n, name) .. ': ' .. why
    elseif name == 'PTR' then
      if op[4] ~= feed_id then
        return where(n, name) .. ': names another feed entry'
      end
      local from = redis.call('HGET', keys[op[3]], 'own_from')
      local legacy = from and id_key(feed_id) and id_key(from) and id_key(feed_id) <= id_key(from)
      if not legacy and redis.call('EXISTS', keys[op[2]]) == 0 then
        return 'not the log entry\'s own pointer: feed id ' .. feed_id:sub(1, 41)
          .. ' points at log id ' .. op[5]:sub(1, 41)
          .. ' (a duplicated or forged pointer; see docs/security.md)'
      end
    end
  end
  return nil
end

local function error_text(e)
  if type(e) == 'table' then
    e = e.err
  end
  return string.sub(tostring(e), 1, 300)
end

-- Dead-letter one entry from inside the call (its XACK already returned 1).
local function reject(keys, rej, entry, reason)
  if rej.dlq == nil then
    error('memstream: entry ' .. tostring(entry[1]) .. ' rejected and no DLQ given: ' .. reason)
  end
  local owner, ver = entry[3] or '', entry[4] or ''
  local log_id = ''
  local ms, seq = string.match(ver, '^0*(%d-%d)%-0*(%d-%d)$')
  if ms then
    log_id = ms .. '-' .. seq
  end
  redis.call('XADD', rej.dlq, 'MAXLEN', '~', 100000, '*',
    'feed_id', entry[1], 'owner', owner, 'log_id', log_id, 'group', rej.group,
    'deliveries', '1', 'reason', 'rejected by ms_apply: ' .. reason)
  if rej.stats then
    redis.call('HINCRBY', rej.stats, 'dlq', 1)
  end
end

-- Validate, then run one entry's ops; a failure dead-letters this entry alone. Only a
-- server-side error that no argument shows (a key of the wrong type, say) can leave
-- some of the entry's writes done; validation rules out everything else.
local function run_entry(keys, rej, entry)
  local reason = validate_ops(keys, entry[2], entry[1])
  if reason == nil then
    local ok, e = pcall(run_ops, keys, entry[2])
    if ok then
      return
    end
    reason = 'failed inside ms_apply: ' .. error_text(e)
    batch.marks = {}  -- a failed op may have left a cached watermark behind
  end
  reject(keys, rej, entry, reason)
end

-- Fold events that need no ack gate (replay's writes, an owner's rebuild), as one call.
-- Fold events that need no ack gate (replay's writes, an owner's rebuild). Each event is
-- validated first, as ms_apply does; one that fails is skipped (workers dead-letter it).
-- Returns how many events were folded.
local function run_folds(keys, folds)
  begin_batch()
  local done = 0
  for _, ops in ipairs(folds) do
    -- pcall: a server-side error (a key of the wrong type) skips this event alone.
    if validate_ops(keys, ops, '') == nil and pcall(run_ops, keys, ops) then
      done = done + 1
    else
      batch.marks = {}
    end
  end
  end_batch()
  return done
end

-- KEYS[1] = feed; the rest are every key the ops name (ops refer to them by index).
-- ARGV[1] = group, ARGV[2] = msgpack [[feed_id, ops, owner, sortable log id], ...]
-- (owner and log id may be absent), ARGV[3] = '1' when KEYS[2] is the version's fences
-- hash (replay --owner): an entry that names its owner and sortable log id, at or below
-- that owner's fence, is acked without writing, because the owner's rebuild already
-- folded it. ARGV[4], ARGV[5] (optional) = KEYS index of the partition's DLQ and stats:
-- an entry whose ops fail validation, or fail on the server, is dead-lettered there alone.
-- Returns the number of entries acked here (XACK returned 1), fenced ones included.
local function ms_apply(keys, args)
  local refused = require_worker(keys[1], 'ms_apply')
  if refused then
    return refused
  end
  local group = args[1]
  local entries = cmsgpack.unpack(args[2])
  -- One EXISTS per call keeps the common case (no rebuild ever ran) to no extra reads.
  local fenced = args[3] == '1' and redis.call('EXISTS', keys[2]) == 1
  local rej = {group = group, dlq = keys[tonumber(args[4] or '')], stats = keys[tonumber(args[5] or '')]}
  local fences = {}
  local acked = 0
  begin_batch()
  for _, entry in ipairs(entries) do
    if redis.call('XACK', keys[1], group, entry[1]) == 1 then
      acked = acked + 1
      local skip = false
      if fenced and type(entry[3]) == 'string' and type(entry[4]) == 'string' then
        local fence = fences[entry[3]]
        if fence == nil then
          fence = redis.call('HGET', keys[2], entry[3])
          fences[entry[3]] = fence
        end
        skip = fence and entry[4] <= fence
      end
      if not skip then
        current_feed_id = entry[1]
        run_entry(keys, rej, entry)
        current_feed_id = ''
      end
    end
  end
  end_batch()
  return acked
end

-- Replay writes for events up to the cutoff: no ack (they come from the log, not the
-- feed); each event is folded once by the replayer. ARGV[1] = msgpack [ops, ...]
local function ms_write(keys, args)
  local refused = require_worker(keys[1], 'ms_write')
  if refused then
    return refused
  end
  current_feed_id = ''
  return run_folds(keys, cmsgpack.unpack(args[1]))
end

-- Start building version N+1 in one partition, atomically: its group starts at the
-- feed's current end and the heads are copied as the cutoff, so every event is either
-- folded by the replayer (<= cutoff) or applied by live workers (after it), never both.
-- KEYS = feed, heads, cutoff. ARGV[1] = group.
local function ms_replay_begin(keys, args)
  local refused = require_worker(keys[1], 'ms_replay_begin')
  if refused then
    return refused
  end
  redis.call('DEL', keys[3])
  local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', keys[1], args[1], '$', 'MKSTREAM')
  if not ok then
    return redis.error_reply('ERR memstream: cannot create group ' .. args[1] .. ': ' .. tostring(err))
  end
  -- The cutoff is the feed's last id, the same for every owner: a log entry and its
  -- pointer share one id (ms_append), so an entry at or below it was pointed at before
  -- the group's start (the replayer folds it) and one above it after (live workers apply
  -- it). Older entries have a log id at or below their pointer's, which is at or below
  -- own_from, so they are folded too. The head values are not used: producers can write
  -- heads, and a forged head must not move a replay's cutoff (docs/security.md).
  local info = redis.call('XINFO', 'STREAM', keys[1])
  local cut = '0-0'
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then cut = info[i + 1] end
  end
  local owners = redis.call('HKEYS', keys[2])
  -- HSET in chunks: unpack() of a large table overflows Lua's C stack.
  for i = 1, #owners, 500 do
    local pairs_ = {}
    for j = i, math.min(i + 499, #owners) do
      pairs_[#pairs_ + 1] = owners[j]
      pairs_[#pairs_ + 1] = cut
    end
    redis.call('HSET', keys[3], unpack(pairs_))
  end
  return #owners
end

-- Rebuild one owner in place in the active version (replay --owner), atomically:
-- check the owner's log still ends where the fold stopped, delete the owner's keys,
-- run the fold, and raise the owner's fence so ms_apply skips what the fold contains.
-- KEYS[1] = heads, KEYS[2] = fences, KEYS[3] = feed; the rest are the keys to delete and
-- every key the ops name. ARGV[1] = owner, ARGV[2] = head ('' when the owner has no
-- log), ARGV[3] = sortable head (the fence), ARGV[4] = the version's group,
-- ARGV[5] = msgpack [key index, ...] to delete, ARGV[6] = msgpack [ops, ...].
-- Returns {1, n}: done; {0, head}: the owner appended meanwhile, fold up to this head and
-- call again; {-1, ''}: the version's group is gone (replay flipped), nothing written.
local function ms_rebuild_owner(keys, args)
  local refused = require_worker(keys[1], 'ms_rebuild_owner')
  if refused then
    return refused
  end
  local owner, head, fence, group = args[1], args[2], args[3], args[4]
  -- The log's real last id, not heads[owner]: producers can write heads, and a forged
  -- head would set the fence past entries the fold never saw (docs/security.md).
  local tag = string.match(keys[1], '^(ms:{%d+}):heads$')
  local last = tag and redis.call('XREVRANGE', tag .. ':log:' .. owner, '+', '-', 'COUNT', 1)
  local current = (last and last[1] and last[1][1]) or ''
  if current ~= head then
    return {0, current}
  end
  -- A retired version is being deleted by SCAN; writing into it would leave strays.
  local alive = redis.pcall('XPENDING', keys[3], group)
  if type(alive) == 'table' and alive.err then
    return {-1, ''}
  end
  for _, i in ipairs(cmsgpack.unpack(args[5])) do
    redis.call('DEL', keys[i])
  end
  local done = run_folds(keys, cmsgpack.unpack(args[6]))
  if fence ~= '' then
    local cur = redis.call('HGET', keys[2], owner)
    if (not cur) or cur < fence then
      redis.call('HSET', keys[2], owner, fence)
    end
  end
  return {1, done}
end

-- Remove the consumers of every group of a feed that have been idle longer than ARGV[1]
-- ms and hold no pending entries: each worker process joins under its own name, so
-- dead ones would pile up forever. One atomic call, so a consumer that reads between the
-- check and the delete cannot lose entries (XGROUP DELCONSUMER drops its pending ones).
-- KEYS[1] = feed. Returns how many consumers went.
local function ms_reap_consumers(keys, args)
  local refused = require_worker(keys[1], 'ms_reap_consumers')
  if refused then
    return refused
  end
  local idle_ms = tonumber(args[1])
  if redis.call('EXISTS', keys[1]) == 0 or idle_ms == nil then
    return 0
  end
  local removed = 0
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', keys[1])) do
    local group = {}
    for i = 1, #g, 2 do group[g[i]] = g[i + 1] end
    for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', keys[1], group.name)) do
      local info = {}
      for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
      if info.pending == 0 and info.idle > idle_ms then
        redis.call('XGROUP', 'DELCONSUMER', keys[1], group.name, info.name)
        removed = removed + 1
      end
    end
  end
  return removed
end

redis.register_function('ms_apply', ms_apply)
redis.register_function('ms_reap_consumers', ms_reap_consumers)
redis.register_function('ms_rebuild_owner', ms_rebuild_owner)
redis.register_function('ms_write', ms_write)
redis.register_function('ms_replay_begin', ms_replay_begin)
