#!lua name=memstream_tier
-- The cold tier's atomic steps (memstream.tiering, docs/tiering.md).
--
-- ms_tier_commit: record a verified segment in the owner's manifest and trim the log
-- below it, in one call that first checks the log still holds exactly the uploaded
-- entries at its front. A tier process that lost a race (another process archived them,
-- the owner was forgotten, the log changed) gets {0, reason} and nothing changes.
--
--   FCALL ms_tier_commit 3 <log> <manifest> <cold stats>
--         <first id> <last id> <count> <sortable first> <member> <bytes> <raw bytes>
--
-- ms_tier_drop: delete an owner's manifest and take its figures off the partition's
-- totals (forget). Returns the members it removed.
--
--   FCALL ms_tier_drop 2 <manifest> <cold stats>

-- ms_tier_read: the log's oldest entries up to a bound, as [id, flat fields] pairs. The
-- tier process reads through this instead of XRANGE only because a function's reply
-- reaches Python as plain lists, not the per-entry dicts redis-py builds for XRANGE.
--
--   FCALL_RO ms_tier_read 1 <log> <max id, or (id for exclusive> <count>
local function ms_tier_read(keys, args)
  return redis.call('XRANGE', keys[1], '-', args[1], 'COUNT', tonumber(args[2]))
end

local function ms_tier_commit(keys, args)
  local log, manifest, stats = keys[1], keys[2], keys[3]
  local first, last, count = args[1], args[2], tonumber(args[3])
  local first_sortable, member = args[4], args[5]
  local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
  if #oldest == 0 then
    return { 0, 'log is empty' }
  end
  if oldest[1][1] ~= first then
    return { 0, 'log starts at ' .. oldest[1][1] .. ', not ' .. first }
  end
  -- Ids only are compared: a stream entry never changes once written, so the same ids
  -- in the same number at the front of the log are the entries that were uploaded.
  local rows = redis.call('XRANGE', log, first, last, 'COUNT', count + 1)
  if #rows ~= count or rows[#rows][1] ~= last then
    return { 0, 'log holds ' .. #rows .. ' entries from ' .. first .. ' to ' .. last .. ', not ' .. count }
  end
  local newest = redis.call('ZRANGE', manifest, '+', '-', 'BYLEX', 'REV', 'LIMIT', 0, 1)
  if #newest > 0 and string.sub(newest[1], 1, 24) >= first_sortable then
    return { 0, 'manifest already covers ' .. first }
  end
  redis.call('ZADD', manifest, 0, member)
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  local removed = redis.call('XTRIM', log, 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
  redis.call('HINCRBY', stats, 'segments', 1)
  redis.call('HINCRBY', stats, 'entries', count)
  redis.call('HINCRBY', stats, 'bytes', tonumber(args[6]))
  redis.call('HINCRBY', stats, 'raw', tonumber(args[7]))
  return { 1, removed }
end

local function ms_tier_drop(keys, args)
  local manifest, stats = keys[1], keys[2]
  local members = redis.call('ZRANGE', manifest, 0, -1)
  local entries, bytes, raw = 0, 0, 0
  for _, m in ipairs(members) do
    -- <last>|<first>|<count>|<bytes>|<raw>|<sha256>|<name>
    local c, b, r = string.match(m, '^[^|]*|[^|]*|(%d+)|(%d+)|(%d+)|')
    entries = entries + tonumber(c)
    bytes = bytes + tonumber(b)
    raw = raw + tonumber(r)
  end
  if #members > 0 then
    redis.call('HINCRBY', stats, 'segments', -#members)
    redis.call('HINCRBY', stats, 'entries', -entries)
    redis.call('HINCRBY', stats, 'bytes', -bytes)
    redis.call('HINCRBY', stats, 'raw', -raw)
  end
  redis.call('DEL', manifest)
  return members
end

redis.register_function{function_name='ms_tier_read', callback=ms_tier_read, flags={'no-writes'}}
redis.register_function('ms_tier_commit', ms_tier_commit)
redis.register_function('ms_tier_drop', ms_tier_drop)

-- ms_cold_swap: replace projection values that went to the archive by their pointers,
-- each only if the value is still the one uploaded (a newer write wins and stays hot).
-- A pointer keeps the value's version prefix, so last-writer-wins still orders it.
--
--   FCALL ms_cold_swap N <key 1> .. <key N> <field> <expected 1> <pointer 1> ...
local function ms_cold_swap(keys, args)
  local field, swapped = args[1], 0
  for i, key in ipairs(keys) do
    if redis.call('HGET', key, field) == args[2 * i] then
      redis.call('HSET', key, field, args[2 * i + 1])
      swapped = swapped + 1
    end
  end
  return swapped
end

redis.register_function('ms_cold_swap', ms_cold_swap)
