-- range.lua: entries of one stream's entries key, bounded by bytes; read-only, renews nothing.
-- Used for the parts of a read that live in other streams (a fork's ancestors) or that the
-- read script left to the caller. Reading a fork's inherited data must not renew its source.
--
-- KEYS[1] an entries stream.  (The prelude's other KEYS/ARGV conventions don't apply.)
-- ARGV[1] unused   ARGV[2] unused (keep the common layout)
-- ARGV[3] first entry number   ARGV[4] last entry number   ARGV[5] max bytes
-- ARGV[6] bytes the caller already holds   ARGV[7] '1' when it already holds an entry
-- Returns {n1, end1, data1, ms1, n2, ...} (ms: append time, see collect in common.lua): at
-- least one entry when the caller holds none.

return collect(KEYS[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]), ARGV[7] == '1', {})
