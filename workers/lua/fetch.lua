#!lua name=memstream_fetch
-- Read the log entries a batch of feed pointers names, in one call.
--
-- A worker used to send one XRANGE per entry; on the client that costs far more than the
-- server's work (a command to pack and a reply to parse each), so one read-only call
-- returns them all. KEYS = the distinct logs (one partition, one hash tag).
-- ARGV[1] = msgpack [index into KEYS, log id, index, log id, ...] (one argument: the
-- client encodes one blob instead of two arguments per entry). Returns, per pair, the
-- entry's flat field list (without `sig` once it is verified), or false when the entry is gone (the worker dead-letters it),
-- or {FETCH_ERROR, reason} when this one read failed (a log id Redis cannot parse, a log
-- key of the wrong type): one bad pointer must not fail the call for its whole batch.
-- FETCH_ERROR cannot be a field name ms_append writes, and the planner dead-letters it.
local FETCH_ERROR = '\0fetch-error'

-- Signatures (docs/security.md, producers/lua/append.lua): an entry of the log whose id
-- is above the partition's own_from must carry ms_append's signature. Without one, the
-- entry comes back as a FETCH_ERROR when the partition requires signed entries (conf
-- signed = 1), else with the marker field UNSIGNED added, which workers count.
local SIGNING_KEY = '__MEMSTREAM_SIGNING_KEY__'
local UNSIGNED = '\0unsigned'

local function id_key(id)
  local ms, seq = string.match(id or '', '^(%d+)%-(%d+)$')
  if ms == nil or #ms > 20 or #seq > 20 then
    return nil
  end
  return string.rep('0', 20 - #ms) .. ms .. '-' .. string.rep('0', 20 - #seq) .. seq
end

-- The signed fields of an entry: type, v, ct, session, eid, data, sig (nil if absent).
-- ms_append writes them in one order (type v ct data [session] [eid] sig), read here by
-- position; any other layout is read through a table, where the last of a repeated
-- field wins, as before. Building that table for every entry was most of this call's
-- Lua time.
local function signed_fields(flat)
  local n = #flat
  if n >= 10 and n <= 14 and flat[1] == 'type' and flat[3] == 'v' and flat[5] == 'ct'
      and flat[7] == 'data' and flat[n - 1] == 'sig' then
    if n == 10 then
      return flat[2], flat[4], flat[6], nil, nil, flat[8], flat[10]
    elseif n == 12 and flat[9] == 'session' then
      return flat[2], flat[4], flat[6], flat[10], nil, flat[8], flat[12]
    elseif n == 12 and flat[9] == 'eid' then
      return flat[2], flat[4], flat[6], nil, flat[10], flat[8], flat[12]
    elseif n == 14 and flat[9] == 'session' and flat[11] == 'eid' then
      return flat[2], flat[4], flat[6], flat[10], flat[12], flat[8], flat[14]
    end
  end
  local f = {}
  for i = 1, n, 2 do
    f[flat[i]] = flat[i + 1]
  end
  return f.type, f.v, f.ct, f.session, f.eid, f.data, f.sig
end

local function signed_ok(owner, id, flat)
  local etype, v, ct, session, eid, data, sig = signed_fields(flat)
  if sig == nil or etype == nil or data == nil or v == nil or ct == nil then
    return false
  end
  local frame = table.concat({owner, id, etype, v, ct, session or '', eid or '', data}, '\0')
  return sig == redis.sha1hex(SIGNING_KEY .. redis.sha1hex(frame))
end

-- Per log key: its owner and its partition's rules {from = own_from as an id_key,
-- any = true when own_from is 0-0 (every real id is above it), signed = required}; the
-- conf is read once per partition tag and call, the key parsed once per key and call.
local function rules(cache, key)
  local r = cache[key]
  if r ~= nil then
    return r
  end
  local tag, owner = string.match(key, '^(ms:{%d+}):log:(.*)$')
  if tag == nil then
    r = false
  else
    local conf = cache[tag]
    if conf == nil then
      local raw = redis.call('HMGET', tag .. ':conf', 'own_from', 'signed')
      local from = id_key(raw[1] or '0-0') or ''
      conf = {from = from, any = from == id_key('0-0'), signed = raw[2] == '1'}
      cache[tag] = conf
    end
    r = {owner = owner, conf = conf}
  end
  cache[key] = r
  return r
end

local function checked(cache, key, id, flat)
  local r = rules(cache, key)
  if not r then
    return flat  -- not one of our logs
  end
  local conf = r.conf
  if not conf.any then
    local idk = id_key(id)
    if idk == nil or idk <= conf.from then
      return flat  -- written before signatures existed
    end
  end
  if signed_ok(r.owner, id, flat) then
    -- Checked here, the signature is of no use to the worker: dropped from the reply
    -- (ms_append writes it last), which spares converting and parsing it per entry.
    local n = #flat
    if flat[n - 1] == 'sig' then
      flat[n] = nil
      flat[n - 1] = nil
    end
    return flat
  end
  if conf.signed then
    return {FETCH_ERROR, 'not written by ms_append: the entry has no valid signature'}
  end
  flat[#flat + 1] = UNSIGNED
  flat[#flat + 1] = '1'
  return flat
end

local function ms_fetch(keys, args)
  local want = cmsgpack.unpack(args[1])
  local out = {}
  local cache = {}
  for i = 1, #want, 2 do
    local key, id = keys[want[i]], want[i + 1]
    local rows = nil
    if key ~= nil and type(id) == 'string' then
      rows = redis.pcall('XRANGE', key, id, id, 'COUNT', 1)
    end
    if rows == nil then
      out[#out + 1] = {FETCH_ERROR, 'bad fetch arguments'}
    elseif rows.err then
      out[#out + 1] = {FETCH_ERROR, string.sub(tostring(rows.err), 1, 200)}
    elseif rows[1] then
      out[#out + 1] = checked(cache, key, rows[1][1], rows[1][2])
    else
      out[#out + 1] = false
    end
  end
  return out
end

redis.register_function{function_name='ms_fetch', callback=ms_fetch, flags={'no-writes'}}
