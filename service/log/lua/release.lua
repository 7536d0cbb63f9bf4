-- release.lua: drop a fork's reference to this stream (its source), and finish the stream's
-- deletion when that was the last reference and it is deleted or expired.
--
-- KEYS: the source's four keys (see common.lua).  ARGV[1] channel, ARGV[2] grace ms, then
--   ARGV[3] fork path   ARGV[4] fork gen (a newer fork at the same path keeps its reference)
--   ('' '' only re-checks a soft-deleted stream, for the sweeper)
-- Returns {'OK', eff}: eff {'dropped', ...} when the stream is now gone, so the caller
--   releases the stream's own source in turn (cascade); {} otherwise.

local now = now_ms()
if ARGV[3] ~= '' and redis.call('HGET', F, ARGV[3]) == ARGV[4] then
  redis.call('HDEL', F, ARGV[3])
end
local m = load(M)
if not m or redis.call('HLEN', F) > 0 then
  return {'OK', {}}
end
if m.del == '1' or (m.exp and tonumber(m.exp) <= now) then
  return {'OK', remove(m)}
end
-- Nothing reads through it any more: Redis may reclaim it after its own expiry again.
key_expiry(m, true)
return {'OK', {}}
