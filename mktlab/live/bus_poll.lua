-- One poll of a Redis event-bus consumer, atomically (see mktlab/live/bus_redis.py).
-- KEYS: members set, lease_0..lease_{P-1}, stream_0..stream_{P-1}
-- ARGV: token, consumer name, group, lease_ms, budget (max events), heartbeat key prefix,
--       start (rotation offset), busy mask (P chars, '1' = keep: events in flight),
--       P, cursor_0..cursor_{P-1} ('' = read new entries, else read own pending after it)
-- Returns {live consumers, held partitions, their cursors, acquired, reads, wake ids}:
-- reads are {partition, redelivered (0/1), entries}; wake ids (only when nothing was
-- read) are {partition, last entry id} for a consumer-less XREAD BLOCK.
local token, name, group = ARGV[1], ARGV[2], ARGV[3]
local lease_ms, budget, hb = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local start, busy, P = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
local cursors = {}
for i = 1, P do cursors[i] = ARGV[9 + i] end

redis.call('SET', hb .. token, '1', 'PX', lease_ms)
redis.call('SADD', KEYS[1], token)
local live = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', hb .. m) == 1 then live = live + 1 else redis.call('SREM', KEYS[1], m) end
end
local target = math.ceil(P / live)

local held, n = {}, 0
for i = 1, P do
  if redis.call('GET', KEYS[1 + i]) == token then
    redis.call('PEXPIRE', KEYS[1 + i], lease_ms)
    held[i] = true
    n = n + 1
  else
    cursors[i] = ''
  end
end
-- above the fair share: give back partitions with nothing in flight
for k = P - 1, 0, -1 do
  if n <= target then break end
  local i = (start + k) % P + 1
  if held[i] and string.sub(busy, i, i) ~= '1' then
    redis.call('DEL', KEYS[1 + i])
    held[i] = nil
    cursors[i] = ''
    n = n - 1
  end
end
local acquired = {}
for k = 0, P - 1 do
  if n >= target then break end
  local i = (start + k) % P + 1
  if not held[i] and redis.call('SET', KEYS[1 + i], token, 'NX', 'PX', lease_ms) then
    held[i] = true
    n = n + 1
    acquired[#acquired + 1] = i - 1
    -- what a previous holder read but never acked becomes ours and is read first
    local cur = '0-0'
    repeat
      cur = redis.call('XAUTOCLAIM', KEYS[1 + P + i], group, name, 0, cur, 'COUNT', 1000, 'JUSTID')[1]
    until cur == '0-0'
    cursors[i] = '0-0'
  end
end

local order = {}
for k = 0, P - 1 do
  local i = (start + k) % P + 1
  if held[i] then order[#order + 1] = i end
end
local out, full, got = {}, {}, 0
local share = math.ceil(budget / math.max(#order, 1))
for _, i in ipairs(order) do
  local take = math.min(share, budget - got)
  if take <= 0 then break end
  local sk = KEYS[1 + P + i]
  if cursors[i] ~= '' then
    local r = redis.call('XREADGROUP', 'GROUP', group, name, 'COUNT', take, 'STREAMS', sk, cursors[i])
    local entries = (r and r[1] and r[1][2]) or {}
    if #entries == 0 then
      cursors[i] = ''
    else
      cursors[i] = entries[#entries][1]
      out[#out + 1] = {i - 1, 1, entries}
      got = got + #entries
    end
  end
  if cursors[i] == '' then
    local r = redis.call('XREADGROUP', 'GROUP', group, name, 'COUNT', take, 'STREAMS', sk, '>')
    if r then
      local entries = r[1][2]
      out[#out + 1] = {i - 1, 0, entries}
      got = got + #entries
      if #entries == take then full[#full + 1] = i end
    end
  end
end
-- unused budget goes to the partitions that filled their share
for _, i in ipairs(full) do
  if got >= budget then break end
  local r = redis.call('XREADGROUP', 'GROUP', group, name, 'COUNT', budget - got, 'STREAMS', KEYS[1 + P + i], '>')
  if r then
    out[#out + 1] = {i - 1, 0, r[1][2]}
    got = got + #r[1][2]
  end
end
local wake = {}
if got == 0 then
  for _, i in ipairs(order) do
    local last = redis.call('XREVRANGE', KEYS[1 + P + i], '+', '-', 'COUNT', 1)
    wake[#wake + 1] = {i - 1, (last[1] and last[1][1]) or '0-0'}
  end
end
local held_list, curs = {}, {}
for _, i in ipairs(order) do
  held_list[#held_list + 1] = i - 1
  curs[#curs + 1] = cursors[i]
end
return {live, held_list, curs, acquired, out, wake}
