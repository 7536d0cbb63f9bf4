-- info.lua: a stream's metadata (HEAD), optionally renewing a sliding TTL (touch).
--
-- KEYS: the stream's four keys (see common.lua).  ARGV[1] channel, ARGV[2] grace ms, then
--   ARGV[3] '1' to renew the TTL (touch), '0' not to (HEAD must not keep a stream alive)
-- Returns {'OK', eff, ct, tail entries, tail bytes, closed, ttl|false, expires|false, created}
--   or {'NOTFOUND', eff} / {'GONE', eff}. An expired stream is removed here (see eff), so the
--   sweeper uses this script with '0' to retire expired streams.

local now = now_ms()
local m = load(M)
local status, eff = check_live(m, now)
if status then
  return {status, eff}
end
if ARGV[3] == '1' then
  extend(m, now)
end
local reply = {'OK', eff}
for _, v in ipairs(info(m)) do
  reply[#reply + 1] = v
end
return reply
