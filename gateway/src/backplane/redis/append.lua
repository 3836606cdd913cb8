-- Appends a batch: several appends, each to one user's log *if* a precondition on one of
-- their records holds, the record changed in the same step. It knows nothing of turns or
-- notifications (see `backplane::record`); see `scripts.rs` for the arguments.
--
-- Every `redis.call` from Lua costs about a microsecond, and every string Lua makes is hashed
-- over its whole length (Redis's Lua), so this makes few of both per event: one string per
-- event (its log item), one message per append, the log's meta read and written once per
-- append, the clock read once per batch.
local pub, age = ARGV[1], tonumber(ARGV[3])
local keep, max_bytes = string.match(ARGV[2], '^(%d+):(%d+)$')
keep, max_bytes = tonumber(keep), tonumber(max_bytes)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stamp = string.format('%d|{"seq":', now)

-- Pops `n` items from the front of `log`; the bytes they held.
local function pop(log, n)
  local gone = redis.call('LPOP', log, n)
  local freed = 0
  if gone then for _, e in ipairs(gone) do freed = freed + #e end end
  return freed
end

-- Appends events to a user's log: each gets the next seq, is kept as `<ms>|<JSON>` (capped by
-- count, bytes and age; the log expires when idle) and the append's events are published as
-- one message `<epoch>\n<item>\n<item>…`, so nodes get them in seq order, none missing. A log
-- that is gone (expired, Redis restarted or flushed) starts a new epoch with `cand`.
-- `rests`: the events' JSON without its opening brace.
local function append(log, meta, ch, cand, rests)
  local n = #rests
  if n == 0 then return 0, 0 end
  local m = redis.call('HMGET', meta, 'epoch', 'head', 'bytes', 'exp')
  local epoch, head = m[1], tonumber(m[2] or '0')
  local bytes, exp = tonumber(m[3] or '0'), tonumber(m[4] or '0')
  local set = {}
  if not epoch then
    epoch, head, bytes, exp = cand, 0, 0, 0
    set = {'epoch', epoch}
    redis.call('DEL', log)
  end
  local items = {}
  for i = 1, n do
    items[i] = stamp .. (head + i) .. ',' .. rests[i]
    bytes = bytes + #items[i]
  end
  local first, last = head + 1, head + n
  if keep > 0 then
    local len = 0
    for i = 1, n, 1000 do
      len = redis.call('RPUSH', log, unpack(items, i, math.min(i + 999, n)))
    end
    if len > keep + 64 then
      bytes = bytes - pop(log, len - keep)
      len = keep
    end
    -- Bytes are held exactly: a burst of large events never outgrows the cap.
    while bytes > max_bytes and len > 0 do
      bytes = bytes - pop(log, 1)
      len = len - 1
    end
    -- By age every 64 events (readers check it anyway).
    if math.floor(last / 64) > math.floor(head / 64) then
      while true do
        local e = redis.call('LINDEX', log, 0)
        local at = e and tonumber(string.match(e, '^(%d+)|'))
        if at and at < now - age then bytes = bytes - pop(log, 1) else break end
      end
    end
  else
    bytes = 0
  end
  set[#set + 1] = 'head'
  set[#set + 1] = last
  set[#set + 1] = 'bytes'
  set[#set + 1] = bytes
  -- Idle logs expire between `age` and twice that after their last event.
  if exp < now + age then
    redis.call('PEXPIRE', log, 2 * age)
    redis.call('PEXPIRE', meta, 2 * age)
    set[#set + 1] = 'exp'
    set[#set + 1] = now + 2 * age
  end
  redis.call('HSET', meta, unpack(set))
  redis.call(pub, ch, epoch .. '\n' .. table.concat(items, '\n'))
  return first, last
end

-- Whether the record's condition holds: true and its version, or false and its fields.
local function check(r, expect)
  if expect == '' then return true, false end
  local v, ok
  if string.sub(expect, 1, 1) == '=' then
    local nl = string.find(expect, '\n', 1, true)
    local got = redis.call('HMGET', r, 'v', string.sub(expect, 2, nl - 1))
    v = got[1]
    ok = v and got[2] == string.sub(expect, nl + 1)
  else
    v = redis.call('HGET', r, 'v')
    if expect == '-' then ok = not v elseif expect == '*' then ok = true else ok = v == expect end
  end
  if ok then return true, v end
  return false, redis.call('HGETALL', r)
end

-- Where the arguments of the append at ARGV[a] are: its field pairs, items and events, and
-- the next append's.
local function layout(a)
  local pairs0 = a + 8
  local items0 = pairs0 + 2 * tonumber(ARGV[a + 4])
  local events0 = items0 + tonumber(ARGV[a + 6])
  return pairs0, items0, events0, events0 + tonumber(ARGV[a + 7])
end

-- One append of the batch, its keys from KEYS[k], its arguments from ARGV[a] (laid out as
-- `layout(a)` says). → its reply
local function one(k, a, pairs0, items0, events0, next_a)
  local r, rt, ri = KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local expect, keepr, text = ARGV[a + 2], ARGV[a + 3], ARGV[a + 5]
  local nitems = events0 - items0
  local ok, v = check(r, expect)
  if not ok then return {0, v} end
  local rests = {}
  for i = events0, next_a - 1 do rests[#rests + 1] = ARGV[i] end
  local first, last = append(KEYS[k], KEYS[k + 1], ARGV[a], ARGV[a + 1], rests)
  if expect == '' then return {1, first, last, 0} end
  local version = (tonumber(v) or 0) + 1
  -- One HSET for every field.
  local set = {'v', version}
  if not v and first > 0 then set[#set + 1] = 'seq0'; set[#set + 1] = first end
  if last > 0 then set[#set + 1] = 'seq'; set[#set + 1] = last end
  for i = pairs0, items0 - 1 do set[#set + 1] = ARGV[i] end
  redis.call('HSET', r, unpack(set))
  -- A blob made now takes the record's expiry, so nothing of a record outlives it.
  local made = {}
  if #text > 0 and redis.call('APPEND', rt, text) == #text then made[#made + 1] = rt end
  -- In chunks: Lua's stack takes a few thousand values at once.
  local len = 0
  for i = items0, events0 - 1, 1000 do
    len = redis.call('RPUSH', ri, unpack(ARGV, i, math.min(i + 999, events0 - 1)))
  end
  if nitems > 0 and len == nitems then made[#made + 1] = ri end
  if keepr == '0' then
    for _, key in ipairs({r, rt, ri}) do redis.call('PERSIST', key) end
  elseif keepr ~= '' then
    for _, key in ipairs({r, rt, ri}) do redis.call('PEXPIRE', key, keepr) end
  elseif #made > 0 then
    local ttl = redis.call('PTTL', r)
    if ttl > 0 then for _, key in ipairs(made) do redis.call('PEXPIRE', key, ttl) end end
  end
  return {1, first, last, version}
end

-- An append that fails part-way (what it wrote stays, as with any script) answers with the
-- error; the others of the batch go on.
local out, a = {}, 4
for k = 1, #KEYS, 5 do
  local pairs0, items0, events0, next_a = layout(a)
  local ok, res = pcall(one, k, a, pairs0, items0, events0, next_a)
  if ok then
    out[#out + 1] = res
  else
    out[#out + 1] = {-1, type(res) == 'table' and tostring(res.err) or tostring(res)}
  end
  a = next_a
end
return out
