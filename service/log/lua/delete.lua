-- delete.lua: delete a stream; it stays as a soft-deleted husk while forks reference it.
--
-- KEYS: the stream's four keys (see common.lua).  ARGV[1] channel, ARGV[2] grace ms.
-- Returns {'OK', eff} (eff: {'soft'} or {'dropped', ...}, see common.lua), {'NOTFOUND', eff}
--   or {'GONE', eff}. Publishes a delete notice (kind 1) so live readers re-read and stop.

local now = now_ms()
local m = load(M)
local status, eff = check_live(m, now)
if status then
  return {status, eff}
end
return {'OK', remove(m)}
