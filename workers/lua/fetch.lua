#!lua name=memstream_fetch
-- Read the log entries a batch of feed pointers names, in one call.
--
-- A worker used to send one XRANGE per entry; on the client that costs far more than the
-- server's work (a command to pack and a reply to parse each), so one read-only call
-- returns them all. KEYS = the distinct logs (one partition, one hash tag).
-- ARGV[1] = msgpack [index into KEYS, log id, index, log id, ...] (one argument: the
-- client encodes one blob instead of two arguments per entry). Returns, per pair, the
-- entry's flat field list, or false when the entry is gone (the worker dead-letters it),
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

local function signed_ok(owner, id, flat)
  local f = {}
  for i = 1, #flat, 2 do
    f[flat[i]] = flat[i + 1]
  end
  if f.sig == nil or f.type == nil or f.data == nil or f.v == nil or f.ct == nil then
    return false
  end
  local frame = table.concat({owner, id, f.type, f.v, f.ct, f.session or '', f.eid or '', f.data}, '\0')
  return f.sig == redis.sha1hex(SIGNING_KEY .. redis.sha1hex(frame))
end

-- Per partition tag: {own_from as an id_key, signed required}; read once per call.
local function rules(cache, key)
  local tag = string.match(key, '^(ms:{%d+}):log:')
  if tag == nil then
    return nil
  end
  local r = cache[tag]
  if r == nil then
    local conf = redis.call('HMGET', tag .. ':conf', 'own_from', 'signed')
    r = {from = id_key(conf[1] or '0-0') or '', signed = conf[2] == '1'}
    cache[tag] = r
  end
  return r
end

local function checked(cache, key, id, flat)
  local r = rules(cache, key)
  local idk = id_key(id)
  if r == nil or idk == nil or idk <= r.from then
    return flat  -- not one of our logs, or written before signatures existed
  end
  local owner = string.match(key, ':log:(.*)$')
  if signed_ok(owner, id, flat) then
    return flat
  end
  if r.signed then
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
