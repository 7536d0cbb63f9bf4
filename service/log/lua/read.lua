-- read.lua: validate a read position, renew a sliding TTL and return the stream's state with
-- its own entries after the position, in one step so tail and closed match the entries.
--
-- KEYS: the stream's four keys (see common.lua).  ARGV[1] channel, ARGV[2] grace ms, then
--   ARGV[3] position entries   ARGV[4] position bytes   ARGV[5] max bytes
--   ARGV[6] gen for which the caller already checked that a position below the fork base is
--           an entry boundary in the ancestors ('' when it didn't)
-- Returns:
--   {'OK', eff, ct, tail entries, tail bytes, closed, base entries, base bytes, gen,
--    ancestors|false, created ms, n1, end1, data1, ms1, n2, ...}  (ms: append time)
--        the entries are only this stream's own ones, and only when the position is at or
--        above the fork base; below it the caller reads the ancestors, then this stream
--   {'CHAIN', eff, gen, ancestors, base entries}
--        the position is below the fork base: check it there, then call again with gen
--   {'OFFSETGONE', eff, start entries, start bytes}
--        the position is before the earliest offset retention kept (see trim in common.lua)
--   {'BADOFFSET', eff}   {'NOTFOUND', eff}   {'GONE', eff}
-- Nothing is renewed when the position is invalid, gone or still unchecked.

local now = now_ms()
local m = load(M)
local status, eff = check_live(m, now)
if status then
  return {status, eff}
end

local ae, ab, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local te, tb = tonumber(m.te), tonumber(m.tb)
local be, bb = tonumber(m.be), tonumber(m.bb)
local se, sb = start_of(m)
if offset_gt(se, sb, ae, ab) then
  return {'OFFSETGONE', eff, I(se), I(sb)}
end
if offset_gt(ae, ab, te, tb) then
  return {'BADOFFSET', eff}
end
if ae == se and ab == sb then
  -- The earliest readable offset is a boundary, though the entry ending there may be trimmed.
elseif ae == 0 then
  if ab ~= 0 then
    return {'BADOFFSET', eff}
  end
elseif ae > be then
  local _, b = entry(E, ae)
  if b ~= ab then
    return {'BADOFFSET', eff}
  end
elseif ae == be then
  if ab ~= bb then
    return {'BADOFFSET', eff}
  end
elseif ARGV[6] ~= m.gen then
  return {'CHAIN', eff, m.gen, m.anc or false, m.be}
end

extend(m, now)
local reply = {
  'OK', eff, m.ct, m.te, m.tb, m.closed, m.be, m.bb, m.gen, m.anc or false, m.created,
}
if ae >= be then
  collect(E, ae + 1, te, max_bytes, 0, false, reply)
end
return reply
