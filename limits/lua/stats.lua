-- stats.lua: a consistent read of one model's budget for dashboards; read-only.
-- A script only because "expired" needs Redis's clock, and one snapshot beats four reads.
--
-- KEYS[1] enqueued  string: tokens held by live reservations of the model
-- KEYS[2] leases    zset: reservation id -> lease expiry (ms since the epoch, Redis clock)
-- KEYS[3] cap       string: the model's last cap (absent: never set)
-- ARGV: none
-- Returns {enqueued, cap (0 if never set), leases, expired leases not yet reclaimed}.

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return {
  tonumber(redis.call('GET', KEYS[1]) or '0'),
  tonumber(redis.call('GET', KEYS[3]) or '0'),
  redis.call('ZCARD', KEYS[2]),
  redis.call('ZCOUNT', KEYS[2], '-inf', now_ms),
}
