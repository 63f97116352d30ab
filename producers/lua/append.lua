#!lua name=memstream
-- ms_append: the wire contract. One atomic call validates, deduplicates, appends to the
-- owner's log, points the partition feed at it and records the owner's head.
--
--   FCALL ms_append 2 ms:{P}:log:<owner> ms:{P}:feed type <t> data <bytes>
--         [ct json|msgpack] [eid <id>] [session <id>] [v <n>]
--
-- ms_append_many: the same for many events of one partition in one call (see below).
--
-- heads, conf and eid keys are derived here from the validated {P} tag rather than passed,
-- because the contract fixes two declared keys; they share the slot, so Cluster accepts them.
-- producers/keys.py builds the same strings and a test checks the two agree.

local function fail(reason)
  return redis.error_reply('ERR memstream: ' .. reason)
end

-- Every value quoted in an error is capped: a 1 MB argument must not come back whole.
local function cap(value)
  local text = tostring(value)
  if #text <= 64 then
    return text
  end
  return string.sub(text, 1, 64) .. '... (' .. #text .. ' bytes)'
end

local ID_RULE = 'must be 1 to 200 characters from A-Z a-z 0-9 . _ @ + = - and start with a letter or digit'

local function valid_id(s)
  return s ~= nil and #s >= 1 and #s <= 200 and string.match(s, '^[%w][%w%._@%+=%-]*$') ~= nil
end

-- Memos of pure checks, kept by the library between calls: owners, sessions and types
-- repeat from one append to the next, and each check is a pattern match or a sha1 that
-- the same string always passes or fails alike. They hold only strings that passed (a
-- result, never data or state), so replicas and AOF, which get the effects, not the
-- calls, are unaffected, and a reload starts them empty. Each is cleared when it reaches
-- MEMO_MAX entries, which bounds its memory (a few hundred KB at worst).
local MEMO_MAX = 4096

local function memo()
  return { n = 0, of = {} }
end

local function remember(m, key, value)
  if m.n >= MEMO_MAX then
    m.n, m.of = 0, {}
  end
  m.n = m.n + 1
  m.of[key] = value
  return value
end

local good_ids, good_types, owner_hash = memo(), memo(), memo()

-- valid_id, remembered: for owners and sessions (eids are new on every append, so they
-- are checked with valid_id and not remembered).
local function known_id(s)
  if s ~= nil and good_ids.of[s] then
    return true
  end
  return valid_id(s) and remember(good_ids, s, true)
end

local ARGS = { ct = true, eid = true, session = true, v = true, type = true, data = true }

-- args[first..last] as name/value pairs (ms_append_many frames each event's pairs).
local function parse_args(args, first, last)
  first, last = first or 1, last or #args
  if (last - first + 1) % 2 ~= 0 then
    return nil, 'arguments must be name/value pairs'
  end
  local out = {}
  for i = first, last, 2 do
    local name = args[i]
    if not ARGS[name] then
      return nil, "unknown argument '" .. cap(name) .. "'"
    end
    if out[name] ~= nil then
      return nil, "argument '" .. cap(name) .. "' given twice"
    end
    out[name] = args[i + 1]
  end
  return out
end


-- Nesting depth: data deeper than MAX_DEPTH maps and lists is refused here, because
-- recursive readers (JSON parsers, validators, printers) die on it instead of naming the
-- entry. producers/codec.py has the same bound. Both scans jump from one structural byte
-- to the next and skip strings whole, and run only when a count of the bytes that can
-- open a container (may_nest) shows the data might be that deep.
local MAX_DEPTH = 64

-- True when `s` has more than MAX_DEPTH bytes that can open a container: fewer cannot nest
-- that deep. `skip` is an anchored pattern of a run of the other bytes: Lua matches a run in
-- one tight loop, where finding a class byte restarts the matcher at every position (four
-- times the cost, on every append).
local function may_nest(s, skip)
  local pos, n, len = 1, 0, #s
  while true do
    local _, e = string.find(s, skip, pos)
    if e >= len then
      return false
    end
    n = n + 1  -- the byte at e + 1 can open a container
    if n > MAX_DEPTH then
      return true
    end
    pos = e + 2
  end
end

local function json_too_deep(s)
  if not may_nest(s, '^[^%[{]*') then
    return false
  end
  local pos, depth = 1, 0
  while true do
    local i, _, c = string.find(s, '([%[%]{}"])', pos)
    if i == nil then
      return false
    end
    pos = i + 1
    if c == '"' then
      while true do  -- skip the string, escapes included
        local k, _, d = string.find(s, '(["\\])', pos)
        if k == nil then
          return false  -- unterminated: not JSON, workers dead-letter it with the reason
        end
        if d == '"' then
          pos = k + 1
          break
        end
        pos = k + 2
      end
    elseif c == '[' or c == '{' then
      depth = depth + 1
      if depth > MAX_DEPTH then
        return true
      end
    else
      depth = depth - 1
    end
  end
end

local function be(s, pos, n)
  local v = 0
  for i = pos, pos + n - 1 do
    v = v * 256 + (string.byte(s, i) or 0)
  end
  return v
end

-- Bytes after the type byte of a msgpack scalar: fixed, or a length of `n` bytes first.
local MP_FIXED = {
  [0xc0] = 0, [0xc2] = 0, [0xc3] = 0, [0xca] = 4, [0xcb] = 8, [0xcc] = 1, [0xcd] = 2,
  [0xce] = 4, [0xcf] = 8, [0xd0] = 1, [0xd1] = 2, [0xd2] = 4, [0xd3] = 8, [0xd4] = 2,
  [0xd5] = 3, [0xd6] = 5, [0xd7] = 9, [0xd8] = 17,
}
local MP_SIZED = {  -- type byte -> {length bytes, extra bytes (ext type)}
  [0xc4] = {1, 0}, [0xc5] = {2, 0}, [0xc6] = {4, 0}, [0xd9] = {1, 0}, [0xda] = {2, 0},
  [0xdb] = {4, 0}, [0xc7] = {1, 1}, [0xc8] = {2, 1}, [0xc9] = {4, 1},
}
local MP_CONTAINER = {  -- type byte -> {count bytes, elements per count}
  [0xdc] = {2, 1}, [0xdd] = {4, 1}, [0xde] = {2, 2}, [0xdf] = {4, 2},
}

local function msgpack_too_deep(s)
  if not may_nest(s, '^[^\128-\159\220-\223]*') then
    return false
  end
  local pos, len, depth, left = 1, #s, 0, {}
  while pos <= len do
    local b = string.byte(s, pos)
    local count = nil
    if b <= 0x7f or b >= 0xe0 then
      pos = pos + 1
    elseif b <= 0x8f then
      count, pos = (b - 0x80) * 2, pos + 1
    elseif b <= 0x9f then
      count, pos = b - 0x90, pos + 1
    elseif b <= 0xbf then
      pos = pos + 1 + (b - 0xa0)
    elseif MP_FIXED[b] then
      pos = pos + 1 + MP_FIXED[b]
    elseif MP_SIZED[b] then
      local n, extra = MP_SIZED[b][1], MP_SIZED[b][2]
      pos = pos + 1 + n + extra + be(s, pos + 1, n)
    elseif MP_CONTAINER[b] then
      local n, per = MP_CONTAINER[b][1], MP_CONTAINER[b][2]
      count, pos = be(s, pos + 1, n) * per, pos + 1 + n
    else
      return false  -- 0xc1 is never valid: workers dead-letter it with the reason
    end
    if count ~= nil and depth + 1 > MAX_DEPTH then
      return true
    end
    if count ~= nil and count > 0 then
      depth = depth + 1
      left[depth] = count
    else
      -- one element done; a container whose last element this was is done too
      while depth > 0 do
        left[depth] = left[depth] - 1
        if left[depth] > 0 then
          break
        end
        depth = depth - 1
      end
    end
  end
  return false
end

-- Log and feed entries of one append share one id: the next id of the feed (what XADD *
-- would pick there), or of the log when a write that bypassed ms_append put the log
-- ahead. A pointer is then applied only if its feed id is its log id (docs/security.md):
-- a duplicated or forged pointer cannot have the id of an entry it did not create.
local function parse_id(id)
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function last_id(key)
  local info = redis.pcall('XINFO', 'STREAM', key)
  if info.err then
    if string.find(info.err, 'no such key', 1, true) then
      return 0, 0
    end
    return nil, nil, info.err
  end
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      return parse_id(info[i + 1])
    end
  end
  return nil, nil, 'no last-generated-id'
end

-- The signature of a log entry (docs/security.md): only code that knows the signing key,
-- written into this library at load time, can make it, and producers may not read it.
-- The inner hash frames every field (none but data may hold a NUL, and data is last), the
-- outer one is of fixed length, so it cannot be extended. workers/lua/fetch.lua and
-- workers/signing.py compute the same.
local SIGNING_KEY = '__MEMSTREAM_SIGNING_KEY__'

local function signature(owner, id, a, v, ct)
  -- One concatenation expression builds the frame in one allocation (a table and
  -- table.concat cost a second one and a table per event).
  local frame = owner .. '\0' .. id .. '\0' .. a.type .. '\0' .. v .. '\0' .. ct .. '\0'
    .. (a.session or '') .. '\0' .. (a.eid or '') .. '\0' .. a.data
  return redis.sha1hex(SIGNING_KEY .. redis.sha1hex(frame))
end

local MAX_EXACT = 9007199254740991  -- 2^53 - 1: larger ids are not exact as Lua numbers

local function next_id(now_ms, ms, seq)
  if ms > MAX_EXACT or seq >= MAX_EXACT then
    return nil
  end
  if now_ms > ms then
    return string.format('%d-0', now_ms)
  end
  return string.format('%d-%d', ms, seq + 1)
end

-- The checks of one event's arguments that need no key read; fills in the defaults.
local function check_fields(a)
  if a.type == nil then
    return nil, "field 'type' is required"
  end
  if a.data == nil then
    return nil, "field 'data' is required"
  end
  if not good_types.of[a.type] then
    if #a.type > 64 or string.match(a.type, '^[a-z][a-z0-9_]*%.[a-z0-9_%.]*[a-z0-9_]$') == nil then
      return nil, "type must be 3 to 64 characters of a-z 0-9 _ . like 'message.appended', got '" .. cap(a.type) .. "'"
    end
    remember(good_types, a.type, true)
  end
  a.ct = a.ct or 'msgpack'
  if a.ct ~= 'msgpack' and a.ct ~= 'json' then
    return nil, "ct must be 'json' or 'msgpack', got '" .. cap(a.ct) .. "'"
  end
  a.v = a.v or '1'
  if string.match(a.v, '^[1-9]%d?%d?%d?$') == nil then
    return nil, "v must be an integer from 1 to 9999, got '" .. cap(a.v) .. "'"
  end
  if a.session ~= nil and not known_id(a.session) then
    return nil, 'session ' .. ID_RULE
  end
  if a.eid ~= nil and not valid_id(a.eid) then
    return nil, 'eid ' .. ID_RULE
  end
  return a
end

local function read_conf(tag, p)
  local conf = redis.call('HMGET', tag .. ':conf', 'partitions', 'max_event_bytes', 'eid_ttl')
  local partitions = tonumber(conf[1])
  if partitions == nil then
    return nil, 'deployment not initialised for partition ' .. p .. ': run memstream init, or check that ' .. p .. ' is below the partition count in ms:meta'
  end
  return { partitions = partitions, max_bytes = tonumber(conf[2]) or 1048576, eid_ttl = tonumber(conf[3]) or 86400 }
end

local function check_owner(owner, p, conf)
  -- The hash is remembered, not the partition: a new partition count still applies.
  local h = owner_hash.of[owner]
  if h == nil then
    h = remember(owner_hash, owner, tonumber(string.sub(redis.sha1hex(owner), 1, 8), 16))
  end
  local expected = h % conf.partitions
  if tostring(expected) ~= p then
    return nil, 'partition mismatch: owner ' .. owner .. ' belongs to partition ' .. expected .. ', keys name ' .. p
  end
  return true
end

local function check_data(a, conf)
  if #a.data > conf.max_bytes then
    return nil, 'data is ' .. #a.data .. ' bytes, over max_event_bytes ' .. conf.max_bytes
  end
  if (a.ct == 'json' and json_too_deep(a.data)) or (a.ct == 'msgpack' and msgpack_too_deep(a.data)) then
    return nil, 'data nests maps and lists deeper than ' .. MAX_DEPTH .. ' levels'
  end
  return true
end

-- The ids an earlier call with this eid stored, or nil.
local function seen_ids(eid_key)
  if eid_key == nil then
    return nil
  end
  local seen = redis.call('GET', eid_key)
  if seen then
    local log_id, feed_id = string.match(seen, '^(%S+) (%S+)$')
    return { log_id, feed_id }
  end
  return nil
end

-- Write one checked event: its pointer in the feed, then its signed log entry, with one
-- shared id after `last` (the feed's last id as the caller knows it). Returns log_id and
-- feed_id, or nil and the reason; every write is a pcall, so a batch can go on.
-- XADD of the signed log entry, its fields in the documented order. The arguments are
-- spelled out, one branch per optional field, instead of a table and unpack(): that
-- table was built for every event.
local function xadd_log(log_key, id, a, sig)
  if a.session ~= nil and a.eid ~= nil then
    return redis.pcall('XADD', log_key, id, 'type', a.type, 'v', a.v, 'ct', a.ct, 'data', a.data,
      'session', a.session, 'eid', a.eid, 'sig', sig)
  elseif a.eid ~= nil then
    return redis.pcall('XADD', log_key, id, 'type', a.type, 'v', a.v, 'ct', a.ct, 'data', a.data,
      'eid', a.eid, 'sig', sig)
  elseif a.session ~= nil then
    return redis.pcall('XADD', log_key, id, 'type', a.type, 'v', a.v, 'ct', a.ct, 'data', a.data,
      'session', a.session, 'sig', sig)
  end
  return redis.pcall('XADD', log_key, id, 'type', a.type, 'v', a.v, 'ct', a.ct, 'data', a.data,
    'sig', sig)
end

local function write_event(log_key, feed_key, owner, a, now_ms, last)
  -- The id: the next one of the feed. Its last id is kept in ms:{P}:last by every append
  -- (a GET is a twentieth of XINFO STREAM); when that is behind (a pointer written by
  -- `dlq retry` or around ms_append), the feed refuses the id and XINFO gives the truth.
  local feed_ms, feed_seq = parse_id(last)
  local log_id = next_id(now_ms, feed_ms or 0, feed_seq or 0)
  local feed_id = log_id and redis.pcall('XADD', feed_key, log_id, 'o', owner, 'l', log_id)
  if not feed_id or feed_id.err then
    local feed_err
    feed_ms, feed_seq, feed_err = last_id(feed_key)
    if feed_ms == nil then
      return nil, 'feed ' .. feed_key .. ' is not a stream: ' .. cap(feed_err)
    end
    log_id = next_id(now_ms, feed_ms, feed_seq)
    if log_id == nil then
      return nil, 'cannot append to the feed: its id space is exhausted'
    end
    feed_id = redis.pcall('XADD', feed_key, log_id, 'o', owner, 'l', log_id)
    if feed_id.err then
      return nil, 'cannot append to the feed: ' .. cap(feed_id.err)
    end
  end
  local added = xadd_log(log_key, log_id, a, signature(owner, log_id, a, a.v, a.ct))
  if added.err then
    -- The log is ahead of the feed (written around ms_append) or not a stream. The pointer
    -- just written stays: its entry can never exist (the log is past it), so workers
    -- dead-letter it as missing. Producers get no XDEL, which would let them delete others'.
    local log_ms, log_seq, log_err = last_id(log_key)
    if log_ms == nil then
      return nil, 'log key is not a stream: ' .. cap(log_err)
    end
    local ms, seq = parse_id(log_id)
    if log_ms > ms or (log_ms == ms and log_seq > seq) then
      ms, seq = log_ms, log_seq
    end
    log_id = next_id(now_ms, ms, seq)
    if log_id == nil then
      return nil, 'cannot append to the log: its id space is exhausted'
    end
    added = xadd_log(log_key, log_id, a, signature(owner, log_id, a, a.v, a.ct))
    if added.err then
      return nil, 'cannot append to the log: ' .. cap(added.err)
    end
    feed_id = redis.pcall('XADD', feed_key, log_id, 'o', owner, 'l', log_id)
    if feed_id.err then
      return nil, 'cannot append to the feed: ' .. cap(feed_id.err)
    end
  end
  return log_id, feed_id
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The owner of a log key of partition `p`, or nil and the reason.
local function log_owner(key, p)
  local kp, owner = string.match(key, '^ms:{(%d+)}:log:(.*)$')
  if kp == nil then
    return nil, 'log key must look like ms:{P}:log:<owner>, got ' .. cap(key)
  end
  if p ~= nil and kp ~= p then
    return nil, 'log key is not in the partition of the feed ' .. p .. ', got ' .. cap(key)
  end
  if not known_id(owner) then
    return nil, 'owner ' .. ID_RULE
  end
  return owner, kp
end

local function ms_append(keys, args)
  if #keys ~= 2 then
    return fail('ms_append takes 2 keys: the log and the feed')
  end
  local owner, p = log_owner(keys[1], nil)
  if owner == nil then
    return fail(p)
  end
  local tag = 'ms:{' .. p .. '}'
  if keys[2] ~= tag .. ':feed' then
    return fail('feed key must be ' .. tag .. ':feed, got ' .. cap(keys[2]))
  end
  local a, err = parse_args(args)
  if a == nil then
    return fail(err)
  end
  a, err = check_fields(a)
  if a == nil then
    return fail(err)
  end
  local conf, ok
  conf, err = read_conf(tag, p)
  if conf == nil then
    return fail(err)
  end
  ok, err = check_owner(owner, p, conf)
  if ok then
    ok, err = check_data(a, conf)
  end
  if not ok then
    return fail(err)
  end
  local eid_key = a.eid and (tag .. ':eid:' .. owner .. ':' .. a.eid)
  local seen = seen_ids(eid_key)
  if seen then
    return seen
  end
  local last_key = tag .. ':last'
  local log_id, feed_id = write_event(keys[1], keys[2], owner, a, now_ms(), redis.call('GET', last_key) or '0-0')
  if log_id == nil then
    return fail(feed_id)
  end
  redis.call('SET', last_key, log_id)
  redis.call('HSET', tag .. ':heads', owner, log_id)
  if eid_key then
    redis.call('SET', eid_key, log_id .. ' ' .. feed_id, 'EX', conf.eid_ttl)
  end
  return { log_id, feed_id }
end

-- ms_append_many: many events of one partition in one call (docs/wire-protocol.md).
--
--   FCALL ms_append_many <1+k> ms:{P}:feed ms:{P}:log:<o1> .. ms:{P}:log:<ok>
--         <key#> <m> <m name/value args> ...   (one group per event)
--
-- <key#> is the position of the event's log key among KEYS (2 to 1+k). The conf is read
-- once, each owner's key and partition checked once, each head and the feed's last id
-- written once, and the clock read once. Each event is checked and deduplicated as
-- ms_append does it; a refused one is skipped with its reason and the others are stored.
-- Reply: { ids, refused }: ids[i] is {log_id, feed_id} or nil for the i-th event,
-- refused is the flat list i0, reason0, i1, reason1, ... with 0-based event indexes.
-- Only a malformed call (keys, framing, deployment) is refused whole, before any write.
local MAX_MANY = 1000

local function ms_append_many(keys, args)
  local p = #keys >= 2 and string.match(keys[1], '^ms:{(%d+)}:feed$')
  if not p then
    return fail('ms_append_many takes the feed, then one or more log keys of its partition')
  end
  local tag = 'ms:{' .. p .. '}'
  local conf, err = read_conf(tag, p)
  if conf == nil then
    return fail(err)
  end
  -- Frame first: a call whose framing is broken is refused before anything is written.
  local frames, pos = {}, 1
  while pos <= #args do
    local k, m = tonumber(args[pos]), tonumber(args[pos + 1] or '')
    if k == nil or k ~= math.floor(k) or k < 2 or k > #keys then
      return fail('event #' .. #frames .. ': key# must be an integer from 2 to ' .. #keys .. ', got ' .. cap(args[pos]))
    end
    if m == nil or m ~= math.floor(m) or m < 0 or m > 12 or pos + 1 + m > #args then
      return fail('event #' .. #frames .. ': argument count must be an integer from 0 to 12 within the call, got ' .. cap(args[pos + 1]))
    end
    frames[#frames + 1] = { k, pos + 2, pos + 1 + m }
    pos = pos + 2 + m
  end
  if #frames == 0 or #frames > MAX_MANY then
    return fail('ms_append_many takes 1 to ' .. MAX_MANY .. ' events, got ' .. #frames)
  end
  local owners = {}  -- key# -> owner, or false and its reason
  local reasons = {}
  local ids, refused, heads = {}, {}, {}
  local last_key = tag .. ':last'
  local last = redis.call('GET', last_key) or '0-0'
  local moved = false
  local clock = now_ms()
  for i, f in ipairs(frames) do
    local k = f[1]
    if owners[k] == nil then
      local owner, why = log_owner(keys[k], p)
      if owner ~= nil then
        local ok
        ok, why = check_owner(owner, p, conf)
        if not ok then
          owner = nil
        end
      end
      owners[k], reasons[k] = owner or false, why
    end
    local owner = owners[k]
    local a, why = nil, reasons[k]
    if owner then
      a, why = parse_args(args, f[2], f[3])
      if a ~= nil then
        a, why = check_fields(a)
      end
      if a ~= nil then
        local ok
        ok, why = check_data(a, conf)
        if not ok then
          a = nil
        end
      end
    end
    if a == nil then
      ids[i] = false
      refused[#refused + 1] = i - 1
      refused[#refused + 1] = why
    else
      local eid_key = a.eid and (tag .. ':eid:' .. owner .. ':' .. a.eid)
      local seen = seen_ids(eid_key)
      if seen then
        ids[i] = seen
      else
        local log_id, feed_id = write_event(keys[k], keys[1], owner, a, clock, last)
        if log_id == nil then
          ids[i] = false
          refused[#refused + 1] = i - 1
          refused[#refused + 1] = feed_id
        else
          ids[i] = { log_id, feed_id }
          last, moved = log_id, true
          heads[owner] = log_id
          if eid_key then
            redis.call('SET', eid_key, log_id .. ' ' .. feed_id, 'EX', conf.eid_ttl)
          end
        end
      end
    end
  end
  if moved then
    redis.call('SET', last_key, last)
    local hset = { tag .. ':heads' }
    for owner, log_id in pairs(heads) do
      hset[#hset + 1] = owner
      hset[#hset + 1] = log_id
    end
    redis.call('HSET', unpack(hset))
  end
  return { ids, refused }
end

redis.register_function('ms_append', ms_append)
redis.register_function('ms_append_many', ms_append_many)
