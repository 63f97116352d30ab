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

local function ms_fetch(keys, args)
  local want = cmsgpack.unpack(args[1])
  local out = {}
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
      out[#out + 1] = rows[1][2]
    else
      out[#out + 1] = false
    end
  end
  return out
end

redis.register_function{function_name='ms_fetch', callback=ms_fetch, flags={'no-writes'}}
