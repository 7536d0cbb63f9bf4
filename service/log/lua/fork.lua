-- fork.lua: step 1 of creating a fork, on the SOURCE's slot: validate the source and the fork
-- point, and take the fork's reference on the source (which pins the source's data).
-- Step 2 (create.lua on the fork's slot) runs from the caller; if it fails the caller releases
-- the reference again (release.lua), so a rejected fork never leaks one.
--
-- KEYS: the source's four keys (see common.lua).  ARGV[1] channel, ARGV[2] grace ms, then
--   ARGV[3] fork path   ARGV[4] fork gen
--   ARGV[5] media type the fork asks for, '' to inherit the source's
--   ARGV[6] '1' when a fork offset is given (else the source's tail)
--   ARGV[7] offset entries   ARGV[8] offset bytes   ARGV[9] sub-offset
-- Returns:
--   {'OK', eff, gen, ct, ttl|false, expires|false, base entries, base bytes, ancestors|false,
--    fork base entries, fork base bytes, prefix|false, check boundary (0/1), check sub (0/1),
--    source start entries, source start bytes}
--     Where the fork point lies below the source's own fork base, its checks need the source's
--     ancestors (other slots): the flags ask the caller to do them, holding the reference.
--     The source's start (its earliest readable offset) gives the fork's: min(it, fork base).
--   {'OFFSETGONE', eff, start entries, start bytes}  the fork offset is before the source's
--     start (retention trimmed it); no reference is taken
--   {'NOTFOUND', eff}   {'CONFLICT', eff, message}   {'BADFORK', eff, message}

local now = now_ms()
local m = load(M)
local status, eff = check_live(m, now)
if status == 'GONE' then
  return {'CONFLICT', eff, 'fork source has been deleted'}
end
if status then
  return {status, eff}
end
if ARGV[5] ~= '' and ARGV[5] ~= m.mt then
  return {'CONFLICT', eff, "fork content type differs from the source's"}
end

local te, tb = tonumber(m.te), tonumber(m.tb)
local be, bb = tonumber(m.be), tonumber(m.bb)
local oe, ob = te, tb
if ARGV[6] == '1' then
  oe, ob = tonumber(ARGV[7]), tonumber(ARGV[8])
end
local se, sb = start_of(m)
if offset_gt(se, sb, oe, ob) then
  return {'OFFSETGONE', eff, I(se), I(sb)}
end
local beyond = 'fork offset is beyond the source stream'
if offset_gt(oe, ob, te, tb) then
  return {'BADFORK', eff, beyond}
end
local check_boundary = 0
if oe == se and ob == sb then
  -- The source's start is a boundary, though the entry ending there may be trimmed.
elseif oe == 0 then
  if ob ~= 0 then
    return {'BADFORK', eff, beyond}
  end
elseif oe > be then
  local _, b = entry(E, oe)
  if b ~= ob then
    return {'BADFORK', eff, beyond}
  end
elseif oe == be then
  if ob ~= bb then
    return {'BADFORK', eff, beyond}
  end
else
  check_boundary = 1
end

local sub = tonumber(ARGV[9])
local prefix = false
local check_sub = 0
if sub > 0 then
  local index = oe + 1
  if index > te then
    return {'BADFORK', eff, 'sub-offset reaches past the end of the source stream'}
  end
  if index <= be then
    check_sub = 1
  else
    local data, _, left = entry(E, index)
    -- The fork's media type equals the source's, so the source says how to count.
    if m.mt == 'application/json' then
      if sub > left then
        return {'BADFORK', eff, 'sub-offset is beyond the messages of that append'}
      end
      local _, b = entry(E, oe + sub)
      oe, ob = oe + sub, b
    else
      if sub > #data then
        return {'BADFORK', eff, 'sub-offset is longer than the entry it points into'}
      end
      prefix = string.sub(data, 1, sub)
    end
  end
end

redis.call('HSET', F, ARGV[3], ARGV[4])
key_expiry(m, false)
return {
  'OK', eff, m.gen, m.ct, m.ttl or false, m.exp or false, m.be, m.bb, m.anc or false,
  I(oe), I(ob), prefix, check_boundary, check_sub, I(se), I(sb),
}
