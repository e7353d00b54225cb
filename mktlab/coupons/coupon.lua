-- mktlab coupon issuer: every state change of one stock shard, in one atomic call.
--
-- All keys of a shard share the hash tag {<campaign>#<k>}, so one call never crosses
-- slots and Redis Cluster can place different shards on different nodes. Every key is
-- passed in KEYS; the script never builds key names.
--
-- Shard keys: meta (hash: stock, budget, cost, start, stop, limit, paused, epoch,
-- max_backlog, salt, issued, leased, lissued), claims (hash user -> coupons held, for
-- users whose home shard this is), outbox (stream of issued coupons, one field 'd' each,
-- drained into the ledger), pend (hash "user|seq" -> "rid|reason": fallback attempts in flight),
-- takes (hash "user|seq|rid" -> decision of this shard as a donor), reqs (hash
-- request_id -> "user|answer", one per time bucket, expiring).
--
-- Answers: "I|seq|code|src" issued, "D|reason" denied, "F|seq|reason" home shard empty,
-- a fallback attempt was opened (the user's claim is held while it runs).

local op = ARGV[1]

local function code_of(salt, user, seq)
  -- deterministic per (campaign salt, user, seq): a replay after data loss re-creates the
  -- same code instead of a second coupon
  return string.upper(string.sub(redis.sha1hex(salt .. '|' .. user .. '|' .. seq), 1, 16))
end

local function entry(user, seq, code, src, home, rid, t, lid)
  -- one outbox field: user|seq|code|shard|home_shard|request_id|issued_at|lease_id
  -- ('|' cannot occur in ids); one field instead of eight keeps XADD and the drain cheap
  return user .. '|' .. seq .. '|' .. code .. '|' .. src .. '|' .. home .. '|' .. rid .. '|'
    .. t .. '|' .. lid
end

local function split(s)
  -- batches travel as newline-joined strings: two arguments instead of two per request
  local t = {}
  if s == '' then return t end
  for part in string.gmatch(s, '[^\n]+') do t[#t + 1] = part end
  return t
end

local CHUNK = 1000  -- arguments per command: Lua's unpack() has a stack limit

local function hmget_many(key, fields)
  -- HMGET of any number of fields, in slices; missing fields come back as false
  local out = {}
  for s = 1, #fields, CHUNK do
    local got = redis.call('HMGET', key, unpack(fields, s, math.min(#fields, s + CHUNK - 1)))
    for j = 1, #got do out[s + j - 1] = got[j] end
  end
  return out
end

local function hset_many(key, flat)
  -- HSET of field, value, field, value ... in slices
  for s = 1, #flat, 2 * CHUNK do
    redis.call('HSET', key, unpack(flat, s, math.min(#flat, s + 2 * CHUNK - 1)))
  end
end

local function lookup(kcur, kprev, rid)
  local v = redis.call('HGET', kcur, rid)
  if not v then v = redis.call('HGET', kprev, rid) end
  return v
end

local function answer_of(stored, user)
  local sep = string.find(stored, '|', 1, true)
  if string.sub(stored, 1, sep - 1) ~= user then return 'D|request_conflict' end
  return string.sub(stored, sep + 1)
end

if op == 'issue' or op == 'issue_leased' then
  -- KEYS: meta, claims, outbox, pend, reqs_cur, reqs_prev
  -- ARGV: op, now, req_ttl, shard, fallback, lease_epoch, lease_src, lease_id, users, rids
  -- (users and rids newline-joined)
  local now = tonumber(ARGV[2])
  local ttl = tonumber(ARGV[3])
  local shard = ARGV[4]
  local fallback = ARGV[5] == '1'
  local leased = op == 'issue_leased'
  local lsrc = ARGV[7]
  local lid = ARGV[8]
  local users, rids = split(ARGV[9]), split(ARGV[10])
  local n = #users
  local out = {}
  local m = redis.call('HMGET', KEYS[1], 'stock', 'budget', 'cost', 'start', 'stop', 'limit',
    'paused', 'epoch', 'max_backlog', 'salt', 'issued', 'lissued')
  if not m[1] then
    -- no state: Redis lost it (restart / failover) or the campaign was never loaded here
    for i = 1, n do out[i] = 'D|not_ready' end
    return table.concat(out, '\n')
  end
  local stock, budget, cost = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
  local start, stop, limit = tonumber(m[4]), tonumber(m[5]), tonumber(m[6])
  local paused, epoch, maxb, salt = m[7] == '1', m[8], tonumber(m[9]), m[10]
  local issued, lissued = tonumber(m[11]), tonumber(m[12])
  local stock0, issued0, lissued0 = stock, issued, lissued
  local backlog = redis.call('XLEN', KEYS[3])
  local src = shard
  if leased then src = lsrc end
  -- one read per key for the whole batch instead of three per request: stored answers
  -- (current and previous bucket) and the users' claims; writes are collected and made
  -- once at the end. The script is atomic, so locals stand in for the keys meanwhile.
  local cur, old, held = hmget_many(KEYS[5], rids), hmget_many(KEYS[6], rids),
    hmget_many(KEYS[2], users)
  local seen, count, dirty = {}, {}, {}
  local claim_writes, answer_writes = {}, {}
  for i = 1, n do
    if count[users[i]] == nil then count[users[i]] = tonumber(held[i] or '0') end
  end
  local function remember(rid, user, answer)
    local v = user .. '|' .. answer
    seen[rid] = v
    answer_writes[#answer_writes + 1] = rid
    answer_writes[#answer_writes + 1] = v
  end
  local function claim(user)
    local c = count[user] + 1
    count[user] = c
    if not dirty[user] then
      dirty[user] = true
      claim_writes[#claim_writes + 1] = user
    end
    return c
  end
  for i = 1, n do
    local user, rid = users[i], rids[i]
    local prev = seen[rid] or cur[i] or old[i]
    local final = nil
    if prev then
      out[i] = answer_of(prev, user)
    elseif paused then
      out[i] = 'D|paused'
    elseif now < start then
      out[i] = 'D|not_started'
    elseif leased and ARGV[6] ~= epoch then
      out[i] = 'D|lease_revoked'
    else
      local c = count[user]
      if now >= stop then
        final = 'D|expired'
      elseif c >= limit then
        final = 'D|duplicate'
      elseif backlog >= maxb then
        out[i] = 'D|ledger_backlog'
      elseif (not leased) and (stock <= 0 or budget < cost) then
        local reason = 'out_of_stock'
        if stock > 0 then reason = 'budget_exhausted' end
        if fallback then
          -- hold the user's claim before any other shard is asked: from here on no
          -- concurrent request of this user can pass the claim check
          local seq = claim(user)
          redis.call('HSET', KEYS[4], user .. '|' .. seq, rid .. '|' .. reason)
          final = 'F|' .. seq .. '|' .. reason
        else
          final = 'D|' .. reason
        end
      else
        local seq = claim(user)
        local code = code_of(salt, user, seq)
        local id = redis.call('XADD', KEYS[3], '*', 'd', entry(user, seq, code, src, shard, rid,
          ARGV[2], lid))
        backlog = backlog + 1
        if leased then
          lissued = lissued + 1
        else
          stock = stock - 1
          budget = budget - cost
        end
        issued = issued + 1
        final = 'I|' .. seq .. '|' .. code .. '|' .. src
        remember(rid, user, final)
        out[i] = final .. '|' .. id
        final = nil
      end
      if final then
        remember(rid, user, final)
        out[i] = final
      end
    end
  end
  if #claim_writes > 0 then
    local pairs_ = {}
    for _, user in ipairs(claim_writes) do
      pairs_[#pairs_ + 1] = user
      pairs_[#pairs_ + 1] = count[user]
    end
    hset_many(KEYS[2], pairs_)
  end
  if #answer_writes > 0 then
    hset_many(KEYS[5], answer_writes)
    redis.call('EXPIRE', KEYS[5], 2 * ttl)
  end
  if stock ~= stock0 or issued ~= issued0 or lissued ~= lissued0 then
    redis.call('HSET', KEYS[1], 'stock', stock, 'budget', budget, 'issued', issued,
      'lissued', lissued)
  end
  return table.concat(out, '\n')
end

if op == 'take' or op == 'fence' then
  -- A donor shard decides once per fallback attempt (user, seq, rid): issue from its
  -- stock ("I|...") or refuse ("X|reason"); the decision is stored and replayed, so a
  -- retried or resumed attempt can never take from the same donor twice, and 'fence'
  -- (used by reconciliation) refuses every attempt not yet decided.
  -- KEYS: meta, outbox, takes
  -- ARGV: op, now, shard, then newline-joined users, seqs, rids, homes
  local now = tonumber(ARGV[2])
  local shard = ARGV[3]
  local users, seqs, rids, homes = split(ARGV[4]), split(ARGV[5]), split(ARGV[6]), split(ARGV[7])
  local n = #users
  local out = {}
  local m = redis.call('HMGET', KEYS[1], 'stock', 'budget', 'cost', 'start', 'stop',
    'paused', 'max_backlog', 'salt')
  local stock, budget, cost = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
  local stock0 = stock
  local backlog = redis.call('XLEN', KEYS[2])
  for i = 1, n do
    local user, seq, rid, home = users[i], seqs[i], rids[i], homes[i]
    local f = user .. '|' .. seq .. '|' .. rid
    local t = redis.call('HGET', KEYS[3], f)
    if t then
      out[i] = t
    else
      local r
      if op == 'fence' then r = 'X|fenced'
      elseif not m[1] then r = 'X|not_ready'
      elseif m[6] == '1' then r = 'X|paused'
      elseif now < tonumber(m[4]) or now >= tonumber(m[5]) then r = 'X|window'
      elseif backlog >= tonumber(m[7]) then r = 'X|ledger_backlog'
      elseif stock <= 0 then r = 'X|out_of_stock'
      elseif budget < cost then r = 'X|budget_exhausted'
      else
        local code = code_of(m[8], user, seq)
        local id = redis.call('XADD', KEYS[2], '*', 'd', entry(user, seq, code, shard, home, rid,
          ARGV[2], ''))
        backlog = backlog + 1
        stock = stock - 1
        budget = budget - cost
        r = 'I|' .. seq .. '|' .. code .. '|' .. shard
        redis.call('HSET', KEYS[3], f, r)
        out[i] = r .. '|' .. id
      end
      if not out[i] then
        redis.call('HSET', KEYS[3], f, r)
        out[i] = r
      end
    end
  end
  if stock0 and stock ~= stock0 then
    redis.call('HSET', KEYS[1], 'stock', stock, 'budget', budget)
  end
  return table.concat(out, '\n')
end

if op == 'confirm' then
  -- Close fallback attempts on the home shard: keep the claim if a donor issued,
  -- give it back otherwise. Idempotent: a closed attempt replays its stored answer.
  -- KEYS: meta, claims, pend, reqs_cur, reqs_prev
  -- ARGV: op, req_ttl, then newline-joined users, seqs, rids, answers
  local ttl = tonumber(ARGV[2])
  local users, seqs, rids, answers = split(ARGV[3]), split(ARGV[4]), split(ARGV[5]), split(ARGV[6])
  local n = #users
  local out = {}
  local issued = 0
  for i = 1, n do
    local user, seq, rid, ans = users[i], seqs[i], rids[i], answers[i]
    local f = user .. '|' .. seq
    local p = redis.call('HGET', KEYS[3], f)
    if p and string.sub(p, 1, #rid + 1) == rid .. '|' then
      redis.call('HDEL', KEYS[3], f)
      if string.sub(ans, 1, 1) == 'I' then
        issued = issued + 1
      else
        if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then redis.call('HDEL', KEYS[2], user) end
      end
      redis.call('HSET', KEYS[4], rid, user .. '|' .. ans)
      redis.call('EXPIRE', KEYS[4], 2 * ttl)
      out[i] = ans
    else
      local prev = lookup(KEYS[4], KEYS[5], rid)
      if prev then out[i] = answer_of(prev, user) else out[i] = ans end
    end
  end
  if issued > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HINCRBY', KEYS[1], 'issued', issued)
  end
  return table.concat(out, '\n')
end

if op == 'lease' then
  -- Local pre-deduction: move up to ARGV[3] coupons of stock (and their budget) to a
  -- process. The lease is valid while the shard's epoch is unchanged.
  -- KEYS: meta. ARGV: op, now, want
  local now, want = tonumber(ARGV[2]), tonumber(ARGV[3])
  local m = redis.call('HMGET', KEYS[1], 'stock', 'budget', 'cost', 'start', 'stop', 'paused', 'epoch')
  if not m[1] then return {0, '', 'not_ready'} end
  if m[6] == '1' then return {0, m[7], 'paused'} end
  if now < tonumber(m[4]) then return {0, m[7], 'not_started'} end
  if now >= tonumber(m[5]) then return {0, m[7], 'expired'} end
  local stock, budget, cost = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
  local k = math.min(want, stock)
  if cost > 0 then k = math.min(k, math.floor(budget / cost)) end
  if k <= 0 then
    if stock <= 0 then return {0, m[7], 'out_of_stock'} end
    return {0, m[7], 'budget_exhausted'}
  end
  redis.call('HINCRBY', KEYS[1], 'stock', -k)
  redis.call('HINCRBY', KEYS[1], 'budget', -k * cost)
  redis.call('HINCRBY', KEYS[1], 'leased', k)
  return {k, m[7], ''}
end

if op == 'unlease' then
  -- Return unused leased stock; ignored if reconciliation already revoked the lease.
  -- KEYS: meta. ARGV: op, count, epoch
  local k = tonumber(ARGV[2])
  local m = redis.call('HMGET', KEYS[1], 'epoch', 'cost')
  if not m[1] or m[1] ~= ARGV[3] or k <= 0 then return 0 end
  redis.call('HINCRBY', KEYS[1], 'stock', k)
  redis.call('HINCRBY', KEYS[1], 'budget', k * tonumber(m[2]))
  redis.call('HINCRBY', KEYS[1], 'leased', -k)
  return k
end

return redis.error_reply('coupon.lua: unknown op ' .. tostring(op))
