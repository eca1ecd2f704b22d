-- reclaim.lua: free reservations whose lease expired (by Redis's clock), at most LIMIT per call so one
-- call never blocks the server for long; the caller loops while it gets LIMIT ids back.
--
-- KEYS[1] enqueued         string: tokens held by live reservations of the model
-- KEYS[2] tokens           hash: reservation id -> tokens
-- KEYS[3] leases           zset: reservation id -> lease expiry (ms)
-- KEYS[4] tenants          hash: reservation id -> tenant
-- KEYS[5] tenant_enqueued  hash: tenant -> tokens held
-- ARGV[1] limit, integer > 0
-- Returns the ids freed, oldest expiry first (empty when none expired).

if redis.replicate_commands then redis.replicate_commands() end

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  local tokens = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  if tokens > 0 then
    redis.call('DECRBY', KEYS[1], tokens)
  end
  local tenant = redis.call('HGET', KEYS[4], id)
  if tenant then
    redis.call('HDEL', KEYS[4], id)
    if redis.call('HINCRBY', KEYS[5], tenant, -tokens) <= 0 then
      redis.call('HDEL', KEYS[5], tenant)
    end
  end
end
return ids
