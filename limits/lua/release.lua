-- release.lua: give one reservation's tokens back. Idempotent: an id not held changes nothing.
--
-- KEYS[1] enqueued         string: tokens held by live reservations of the model
-- KEYS[2] tokens           hash: reservation id -> tokens
-- KEYS[3] leases           zset: reservation id -> lease expiry (ms)
-- KEYS[4] tenants          hash: reservation id -> tenant
-- KEYS[5] tenant_enqueued  hash: tenant -> tokens held
-- ARGV[1] reservation id
-- Returns the tokens released, 0 when the id was not held (unknown, released, or reclaimed).

local id = ARGV[1]
local tokens = redis.call('HGET', KEYS[2], id)
if not tokens then
  return 0
end
tokens = tonumber(tokens)
redis.call('HDEL', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('DECRBY', KEYS[1], tokens)
local tenant = redis.call('HGET', KEYS[4], id)
if tenant then
  redis.call('HDEL', KEYS[4], id)
  -- Drop a tenant's field at zero so the hash lists only tenants holding tokens.
  if redis.call('HINCRBY', KEYS[5], tenant, -tokens) <= 0 then
    redis.call('HDEL', KEYS[5], tenant)
  end
end
return tokens
