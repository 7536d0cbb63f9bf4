-- create.lua: create a stream, or report the one already at this path.
--
-- KEYS: the stream's four keys (see common.lua).  ARGV[1] channel, ARGV[2] grace ms, then
--   ARGV[3]  'probe' (only look: report an existing stream) or 'create'
--   ARGV[4]  gen, the new incarnation's unique id
--   ARGV[5]  cfg, the create request as the caller encodes it (the caller compares it)
--   ARGV[6]  content type        ARGV[7]  its media type
--   ARGV[8]  TTL seconds or ''   ARGV[9]  absolute expiry in ms or '' (used when no TTL)
--   ARGV[10] '1' to create the stream closed
--   ARGV[11] fork source path or ''   ARGV[12] source gen   ARGV[13] ancestor chain (opaque)
--   ARGV[14] fork base entries        ARGV[15] fork base bytes ('0' '0' for a plain stream)
--   ARGV[16] start entries           ARGV[17] start bytes: the earliest readable offset, for
--            a fork min(source's start, fork base) ('0' '0' for a plain stream)
--   ARGV[18] number of prefix items (1 when a binary sub-offset copied bytes, else 0)
--   ARGV[19..] the prefix item (a batch of its own), then the initial items (one batch)
-- Initial items are never trimmed here: the retention cap applies from the first append on.
-- Returns:
--   {'EXISTS', eff, cfg, info...}  a live stream is there; the caller compares configurations
--   {'CONFLICT', eff}              a soft-deleted stream holds the path
--   {'ABSENT', eff}                probe only: nothing (live) is there
--   {'CREATED', eff, info...}      info = ct, tail entries, tail bytes, closed, ttl|false,
--                                  expires|false, created ms
-- eff reports an expired stream this call removed (see common.lua).

local now = now_ms()
local eff = {}
local m = load(M)
if m then
  local status
  status, eff = check_live(m, now)
  if status == 'GONE' then
    return {'CONFLICT', eff}
  end
  if not status then
    local reply = {'EXISTS', eff, m.cfg}
    for _, v in ipairs(info(m)) do
      reply[#reply + 1] = v
    end
    return reply
  end
end
if ARGV[3] == 'probe' then
  return {'ABSENT', eff}
end

-- A recreated path starts from nothing, whatever an earlier incarnation left behind.
redis.call('DEL', M, E, P, F)

local n = {
  gen = ARGV[4], cfg = ARGV[5], ct = ARGV[6], mt = ARGV[7], created = I(now),
  be = ARGV[14], bb = ARGV[15], closed = ARGV[10],
  fs = ARGV[14], se = ARGV[16], sb = ARGV[17],
}
if ARGV[8] ~= '' then
  n.ttl = ARGV[8]
  n.exp = I(now + tonumber(ARGV[8]) * 1000)
elseif ARGV[9] ~= '' then
  n.exp = ARGV[9]
end
if ARGV[11] ~= '' then
  n.src, n.srcgen, n.anc = ARGV[11], ARGV[12], ARGV[13]
end

local te, tb = tonumber(ARGV[14]), tonumber(ARGV[15])
local prefix = tonumber(ARGV[18])
-- Both stamped with the creation time: a copied sub-offset prefix is a new entry of this stream.
te, tb = add(te, tb, 19, 18 + prefix, now)
te, tb = add(te, tb, 19 + prefix, #ARGV, now)
n.te, n.tb = I(te), I(tb)

local fields = {}
for k, v in pairs(n) do
  fields[#fields + 1] = k
  fields[#fields + 1] = v
end
redis.call('HSET', M, unpack(fields))
key_expiry(n, true)

local reply = {'CREATED', eff}
for _, v in ipairs(info(n)) do
  reply[#reply + 1] = v
end
return reply
