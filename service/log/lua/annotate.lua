-- annotate.lua: set or read one annotation of a stream, atomically with its existence check.
-- An annotation is kept in the meta hash as field 'a:<name>', so it goes wherever the stream's
-- metadata goes (delete, expiry, recreation). It renews nothing: neither the stream's TTL nor
-- its keys' expiry (HSET keeps a key's expiry as it is).
--
-- KEYS: the stream's four keys (see common.lua).  ARGV[1] channel, ARGV[2] grace ms, then
--   ARGV[3] 'set' or 'get'   ARGV[4] the name (validated by the caller)   ARGV[5] the value
-- Returns {'OK', eff} after a set, {'OK', eff, value|false} after a get, or {'NOTFOUND', eff}
--   / {'GONE', eff}. An expired stream is removed here (see eff), as any access would.

local now = now_ms()
local m = load(M)
local status, eff = check_live(m, now)
if status then
  return {status, eff}
end
local field = 'a:' .. ARGV[4]
if ARGV[3] == 'set' then
  redis.call('HSET', M, field, ARGV[5])
  return {'OK', eff}
end
return {'OK', eff, m[field] or false}
