-- append.lua: one atomic append (or close), with every write-path rule of rules.py/memory.py.
--
-- KEYS: the stream's four keys (see common.lua).  ARGV[1] channel, ARGV[2] grace ms, then
--   ARGV[3]  media type of the request's content type, '' when it had none
--   ARGV[4]  '1' to close the stream with this append
--   ARGV[5]  '1' when a Stream-Seq is given     ARGV[6]  the Stream-Seq
--   ARGV[7]  producer id   ARGV[8] '1' when a producer is given
--   ARGV[9]  producer epoch                      ARGV[10] producer seq
--   ARGV[11] largest total payload a notification carries (bigger: readers re-read)
--   ARGV[12] retention: the most entries a stream keeps, 0 for all (see trim below)
--   ARGV[13..] the items, one entry each, one batch
-- Returns {status, eff, ...}:
--   {'OK', eff, tail entries, tail bytes, closed}
--   {'DUP', eff, tail entries, tail bytes, closed, epoch, last seq}   producer retry, no write
--   {'CLOSEDUP', eff, tail entries, tail bytes}                       close of a closed stream
--   {'CLOSED', eff, tail entries, tail bytes}
--   {'STALE', eff, current epoch}   {'GAP', eff, expected, received}   {'BADEPOCH', eff}
--   {'SEQ', eff}   {'CTYPE', eff}   {'NOTFOUND', eff}   {'GONE', eff}
-- The verdict order is memory.py's: content type, producer, closed, Stream-Seq. After an
-- accepted append (and its notice) the oldest own entries beyond the retention cap are trimmed.

local FIRST = 13
local now = now_ms()
local m = load(M)
local status, eff = check_live(m, now)
if status then
  return {status, eff}
end

local count = #ARGV - FIRST + 1
local close = ARGV[4] == '1'
local close_only = close and count == 0
-- A producer append of nothing only claims (epoch, seq): a successor fences its predecessor.
local fence = (not close) and count == 0 and ARGV[8] == '1'
if not (close_only or fence) and (ARGV[3] == '' or ARGV[3] ~= m.mt) then
  return {'CTYPE', eff}
end

local has_producer = ARGV[8] == '1'
local pid, epoch, pseq = ARGV[7], tonumber(ARGV[9]), tonumber(ARGV[10])
if has_producer then
  local state = redis.call('HGET', P, pid)
  if not state then
    if pseq ~= 0 then
      return {'GAP', eff, 0, pseq}
    end
  else
    local cur, last = string.match(state, '^(%d+):(%d+)$')
    cur, last = tonumber(cur), tonumber(last)
    if epoch < cur then
      return {'STALE', eff, cur}
    elseif epoch > cur then
      if pseq ~= 0 then
        return {'BADEPOCH', eff}
      end
    elseif pseq <= last then
      return {'DUP', eff, m.te, m.tb, m.closed, cur, last}
    elseif pseq ~= last + 1 then
      return {'GAP', eff, last + 1, pseq}
    end
  end
end

if m.closed == '1' then
  if close_only and not has_producer then
    return {'CLOSEDUP', eff, m.te, m.tb}
  end
  return {'CLOSED', eff, m.te, m.tb}
end

if ARGV[5] == '1' then
  if m.seq and not bytes_gt(ARGV[6], m.seq) then
    return {'SEQ', eff}
  end
  redis.call('HSET', M, 'seq', ARGV[6])
end
if has_producer then
  redis.call('HSET', P, pid, I(epoch) .. ':' .. I(pseq))
  stamp(P, m)
end
if fence then
  return {'OK', eff, m.te, m.tb, m.closed}
end

local start_e, start_b = tonumber(m.te), tonumber(m.tb)
local te, tb = add(start_e, start_b, FIRST, #ARGV, now)
if count > 0 then
  stamp(E, m)
end
m.te, m.tb = I(te), I(tb)
if close then
  m.closed = '1'
end
redis.call('HSET', M, 'te', m.te, 'tb', m.tb, 'closed', m.closed)
extend(m, now)

local items = {}
if tb - start_b <= tonumber(ARGV[11]) then
  for i = FIRST, #ARGV do
    items[#items + 1] = ARGV[i]
  end
end
notify(start_e, start_b, te, tb, tonumber(m.closed), 0, now, items)
-- After the notice: readers at the tail still get everything that was appended.
trim(m, tonumber(ARGV[12]))
return {'OK', eff, m.te, m.tb, m.closed}
