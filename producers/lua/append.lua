#!lua name=memstream
-- ms_append: the wire contract. One atomic call validates, deduplicates, appends to the
-- owner's log, points the partition feed at it and records the owner's head.
--
--   FCALL ms_append 2 ms:{P}:log:<owner> ms:{P}:feed type <t> data <bytes>
--         [ct json|msgpack] [eid <id>] [session <id>] [v <n>]
--
-- heads, conf and eid keys are derived here from the validated {P} tag rather than passed,
-- because the contract fixes two declared keys; they share the slot, so Cluster accepts them.
-- producers/keys.py builds the same strings and a test checks the two agree.

local function fail(reason)
  return redis.error_reply('ERR memstream: ' .. reason)
end

local ID_RULE = 'must be 1 to 200 characters from A-Z a-z 0-9 . _ @ + = - and start with a letter or digit'

local function valid_id(s)
  return s ~= nil and #s >= 1 and #s <= 200 and string.match(s, '^[%w][%w%._@%+=%-]*$') ~= nil
end

local ARGS = { ct = true, eid = true, session = true, v = true, type = true, data = true }

local function parse_args(args)
  if #args % 2 ~= 0 then
    return nil, 'arguments must be name/value pairs'
  end
  local out = {}
  for i = 1, #args, 2 do
    local name = args[i]
    if not ARGS[name] then
      return nil, "unknown argument '" .. tostring(name) .. "'"
    end
    if out[name] ~= nil then
      return nil, "argument '" .. name .. "' given twice"
    end
    out[name] = args[i + 1]
  end
  return out
end

local function ms_append(keys, args)
  if #keys ~= 2 then
    return fail('ms_append takes 2 keys: the log and the feed')
  end
  local p, owner = string.match(keys[1], '^ms:{(%d+)}:log:(.*)$')
  if p == nil then
    return fail('log key must look like ms:{P}:log:<owner>, got ' .. keys[1])
  end
  if not valid_id(owner) then
    return fail('owner ' .. ID_RULE)
  end
  local tag = 'ms:{' .. p .. '}'
  if keys[2] ~= tag .. ':feed' then
    return fail('feed key must be ' .. tag .. ':feed, got ' .. keys[2])
  end

  local a, err = parse_args(args)
  if a == nil then
    return fail(err)
  end
  if a.type == nil then
    return fail("field 'type' is required")
  end
  if a.data == nil then
    return fail("field 'data' is required")
  end
  if #a.type > 64 or string.match(a.type, '^[a-z][a-z0-9_]*%.[a-z0-9_%.]*[a-z0-9_]$') == nil then
    return fail("type must be 3 to 64 characters of a-z 0-9 _ . like 'message.appended', got '" .. a.type .. "'")
  end
  local ct = a.ct or 'msgpack'
  if ct ~= 'msgpack' and ct ~= 'json' then
    return fail("ct must be 'json' or 'msgpack', got '" .. ct .. "'")
  end
  local v = a.v or '1'
  if string.match(v, '^[1-9]%d?%d?%d?$') == nil then
    return fail("v must be an integer from 1 to 9999, got '" .. v .. "'")
  end
  if a.session ~= nil and not valid_id(a.session) then
    return fail('session ' .. ID_RULE)
  end
  if a.eid ~= nil and not valid_id(a.eid) then
    return fail('eid ' .. ID_RULE)
  end

  local conf = redis.call('HMGET', tag .. ':conf', 'partitions', 'max_event_bytes', 'eid_ttl')
  local partitions = tonumber(conf[1])
  if partitions == nil then
    return fail('deployment not initialised for partition ' .. p .. ': run memstream init, or check that ' .. p .. ' is below the partition count in ms:meta')
  end
  local expected = tonumber(string.sub(redis.sha1hex(owner), 1, 8), 16) % partitions
  if tostring(expected) ~= p then
    return fail('partition mismatch: owner ' .. owner .. ' belongs to partition ' .. expected .. ', keys name ' .. p)
  end
  local max_bytes = tonumber(conf[2]) or 1048576
  if #a.data > max_bytes then
    return fail('data is ' .. #a.data .. ' bytes, over max_event_bytes ' .. max_bytes)
  end

  local eid_key
  if a.eid ~= nil then
    eid_key = tag .. ':eid:' .. owner .. ':' .. a.eid
    local seen = redis.call('GET', eid_key)
    if seen then
      local log_id, feed_id = string.match(seen, '^(%S+) (%S+)$')
      return { log_id, feed_id }
    end
  end

  local fields = { 'type', a.type, 'v', v, 'ct', ct, 'data', a.data }
  if a.session ~= nil then
    fields[#fields + 1] = 'session'
    fields[#fields + 1] = a.session
  end
  if a.eid ~= nil then
    fields[#fields + 1] = 'eid'
    fields[#fields + 1] = a.eid
  end
  local log_id = redis.call('XADD', keys[1], '*', unpack(fields))
  local feed_id = redis.call('XADD', keys[2], '*', 'o', owner, 'l', log_id)
  redis.call('HSET', tag .. ':heads', owner, log_id)
  if eid_key ~= nil then
    redis.call('SET', eid_key, log_id .. ' ' .. feed_id, 'EX', tonumber(conf[3]) or 86400)
  end
  return { log_id, feed_id }
end

redis.register_function('ms_append', ms_append)
