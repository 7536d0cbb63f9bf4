-- common.lua: the prelude the loader puts in front of every chunk-log script.
--
-- Per-stream scripts get the four keys of ONE stream, all under one hash tag (one cluster slot):
--   KEYS[1] meta hash      KEYS[2] entries stream (entry n has id "<n>-0")
--   KEYS[3] producer hash  KEYS[4] fork-reference hash (fork path -> fork gen)
-- and ARGV[1] = the stream's notification channel, ARGV[2] = key-expiry grace in ms.
-- Their replies are arrays {status, effects, payload...}. Effects tell the caller what it must
-- finish in other slots, which a script can't touch:
--   {}                                  nothing
--   {'soft'}                            the stream became soft-deleted (forks still read it)
--   {'dropped', src|false, srcgen|false, gen}
--                                       the stream's keys are gone; release its source's
--                                       reference to it when it was a fork
--
-- Meta fields: gen (incarnation id), cfg (the create request, compared by the caller), ct, mt
-- (media type), created, te/tb (tail entries/bytes), be/bb (fork base), closed ('0'/'1'),
-- ttl, exp (logical expiry, ms), kx (key expiry set on the keys), seq (last Stream-Seq),
-- del ('1' when soft-deleted), src/srcgen/anc (fork source, its gen, the ancestor chain),
-- fs (retention: own entries are numbered fs+1, fs+2, ...; fs starts at be and moves up as the
-- oldest are trimmed) and se/sb (the earliest readable offset). A stream written before these
-- existed has none of them: fs = be, se/sb = 0/0 (see first_of and start_of). Fields named
-- a:<name> are the stream's annotations (annotate.lua); no other field starts with 'a:'.

local M, E, P, F = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local GRACE = tonumber(ARGV[2])

-- Lua turns numbers >= 1e14 into "1e+14" when it converts them implicitly.
local function I(n)
  return string.format('%d', n)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function load(key)
  local raw = redis.call('HGETALL', key)
  if #raw == 0 then
    return nil
  end
  local m = {}
  for i = 1, #raw, 2 do
    m[raw[i]] = raw[i + 1]
  end
  return m
end

local function info(m)
  return {m.ct, m.te, m.tb, m.closed, m.ttl or false, m.exp or false, m.created}
end

-- msgpack by hand around cmsgpack: cmsgpack encodes every Lua string as msgpack str, but chunk
-- data is arbitrary bytes and must travel as bin so a strict decoder accepts it.
local function mp_array(n)
  if n < 16 then
    return string.char(0x90 + n)
  elseif n < 65536 then
    return string.char(0xdc) .. struct.pack('>I2', n)
  end
  return string.char(0xdd) .. struct.pack('>I4', n)
end

local function mp_bin(s)
  local n = #s
  if n < 256 then
    return string.char(0xc4, n) .. s
  elseif n < 65536 then
    return string.char(0xc5) .. struct.pack('>I2', n) .. s
  end
  return string.char(0xc6) .. struct.pack('>I4', n) .. s
end

-- The live-tail notice: [start_e, start_b, tail_e, tail_b, closed, kind, appended_ms, data...];
-- kind 0 is an append, 1 a delete. appended_ms is the server time every entry of the append
-- was stored with (its 't' field; 0 in a delete notice). Data is left out by the caller when
-- it is too big to fan out.
local function notify(start_e, start_b, tail_e, tail_b, closed, kind, appended_ms, items)
  local parts = {
    mp_array(7 + #items),
    cmsgpack.pack(start_e, start_b, tail_e, tail_b, closed, kind, appended_ms),
  }
  for i = 1, #items do
    parts[#parts + 1] = mp_bin(items[i])
  end
  redis.call('PUBLISH', ARGV[1], table.concat(parts))
end

-- Redis reclaims an abandoned stream's keys a grace period after its logical expiry, except
-- while forks reference it: their reads need its entries for as long as they live.
local function key_expiry(m, force)
  if redis.call('HLEN', F) > 0 or not m.exp then
    if m.kx then
      redis.call('PERSIST', M)
      redis.call('PERSIST', E)
      redis.call('PERSIST', P)
      redis.call('HDEL', M, 'kx')
      m.kx = nil
    end
    return
  end
  local want = tonumber(m.exp) + GRACE
  -- A sliding TTL moves on every access; re-stamping three keys each time would triple the
  -- cost of an append, so keys are re-stamped only once half the grace has been used up.
  if force or not m.kx or tonumber(m.kx) < want - GRACE / 2 then
    local at = I(want)
    redis.call('PEXPIREAT', M, at)
    redis.call('PEXPIREAT', E, at)
    redis.call('PEXPIREAT', P, at)
    redis.call('HSET', M, 'kx', at)
    m.kx = at
  end
end

-- A key created after the others were stamped (first entry, first producer) has no expiry yet.
local function stamp(key, m)
  if m.kx and redis.call('PTTL', key) == -1 then
    redis.call('PEXPIREAT', key, m.kx)
  end
end

local function extend(m, now)
  if m.ttl then
    m.exp = I(now + tonumber(m.ttl) * 1000)
    redis.call('HSET', M, 'exp', m.exp)
    key_expiry(m, false)
  end
end

-- Delete a stream: keep it as a soft-deleted husk while forks still read it.
local function remove(m)
  if m.del ~= '1' then
    local te, tb = tonumber(m.te), tonumber(m.tb)
    notify(te, tb, te, tb, tonumber(m.closed), 1, 0, {})
  end
  if redis.call('HLEN', F) > 0 then
    redis.call('HSET', M, 'del', '1')
    m.del = '1'
    return {'soft'}
  end
  redis.call('DEL', M, E, P, F)
  return {'dropped', m.src or false, m.srcgen or false, m.gen}
end

-- nil when the stream can be used; else the status to answer and the effects of expiring it.
local function check_live(m, now)
  if not m then
    return 'NOTFOUND', {}
  end
  if m.del == '1' then
    return 'GONE', {}
  end
  if m.exp and tonumber(m.exp) <= now then
    local eff = remove(m)
    if eff[1] == 'soft' then
      return 'GONE', eff
    end
    return 'NOTFOUND', eff
  end
  return nil, {}
end

-- Own entry n: its data, cumulative end bytes and batch-left count; nil when absent.
local function entry(key, n)
  local r = redis.call('XRANGE', key, I(n) .. '-0', I(n) .. '-0')
  if #r == 0 then
    return nil
  end
  local f = r[1][2]
  return f[2], tonumber(f[4]), tonumber(f[6])
end

-- Append ARGV[first..last] as one batch after (te, tb), stamped with server time `now` (ms);
-- returns the new tail. Field order matters: entry() and collect() read them by position.
local function add(te, tb, first, last, now)
  local t = I(now)
  for i = first, last do
    local d = ARGV[i]
    te = te + 1
    tb = tb + #d
    redis.call('XADD', E, I(te) .. '-0', 'd', d, 'b', I(tb), 'k', I(last - i + 1), 't', t)
  end
  return te, tb
end

-- Retention: the number of the stream's last trimmed (or inherited) entry, and its earliest
-- readable offset; reads and forks below that offset are gone.
local function first_of(m)
  return tonumber(m.fs or m.be)
end

local function start_of(m)
  return tonumber(m.se or 0), tonumber(m.sb or 0)
end

-- Drop own entries beyond the newest `max` (memory.py's _Stream.trim); never while forks
-- reference the stream, since their reads need its entries.
local function trim(m, max)
  if max <= 0 or redis.call('HLEN', F) > 0 then
    return
  end
  local floor = tonumber(m.te) - max
  if floor <= first_of(m) then
    return
  end
  -- floor > first: an own entry still there, whose end becomes the earliest readable offset.
  local _, b = entry(E, floor)
  redis.call('XTRIM', E, 'MINID', I(floor + 1) .. '-0')
  m.fs, m.se, m.sb = I(floor), I(floor), I(b)
  redis.call('HSET', M, 'fs', m.fs, 'se', m.se, 'sb', m.sb)
end

-- Entries from..to of `key` appended to `out` as (n, end bytes, data, appended ms) quadruples,
-- stopping before the one that would take `size` past `max_bytes` (but never before the first
-- one: `any`). Entries stored before the 't' field existed report appended ms '0'.
local function collect(key, from, to, max_bytes, size, any, out)
  local count = 8
  while from <= to do
    local batch = redis.call('XRANGE', key, I(from) .. '-0', I(to) .. '-0', 'COUNT', count)
    if #batch == 0 then
      return out
    end
    for i = 1, #batch do
      local f = batch[i][2]
      local data = f[2]
      if any and size + #data > max_bytes then
        return out
      end
      out[#out + 1] = tonumber(string.match(batch[i][1], '^%d+'))
      out[#out + 1] = f[4]
      out[#out + 1] = data
      out[#out + 1] = (f[7] == 't' and f[8]) or '0'
      size = size + #data
      any = true
    end
    from = tonumber(string.match(batch[#batch][1], '^%d+')) + 1
    -- Entry sizes are unknown until fetched: start small so one huge entry isn't fetched with
    -- many more, and grow so thousands of tiny ones don't take thousands of calls.
    if count < 512 then
      count = count * 2
    end
  end
  return out
end

-- Offsets compare as (entries, bytes).
local function offset_gt(ae, ab, be, bb)
  return ae > be or (ae == be and ab > bb)
end

-- Stream-Seq order is plain byte order; Lua's `<` on strings follows the server's locale.
local function bytes_gt(a, b)
  if a == b then
    return false
  end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x > y
    end
  end
  return #a > #b
end
