-- extend.lua: heartbeat; move a held reservation's lease expiry to now + lease.
-- A lease already past its expiry but not yet reclaimed is revived: its holder is evidently alive.
--
-- KEYS[1] leases  zset: reservation id -> lease expiry (ms since the epoch, Redis clock)
-- ARGV[1] reservation id
-- ARGV[2] lease, ms, integer > 0
-- Returns 1 when extended, 0 when the id is not held (released, reclaimed, or never reserved).

if redis.replicate_commands then redis.replicate_commands() end

if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2]),
  ARGV[1])
return 1
