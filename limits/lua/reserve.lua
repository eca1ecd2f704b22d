-- reserve.lua: admit TOKENS for one reservation iff the model's cap (and the tenant's sub-cap) allows.
-- Check and count in one script: MULTI cannot branch on a value. Time is Redis's own (TIME).
--
-- KEYS[1] enqueued         string: tokens held by live reservations of the model
-- KEYS[2] tokens           hash: reservation id -> tokens
-- KEYS[3] leases           zset: reservation id -> lease expiry (ms since the epoch, Redis clock)
-- KEYS[4] tenants          hash: reservation id -> tenant
-- KEYS[5] tenant_enqueued  hash: tenant -> tokens held
-- KEYS[6] cap              string: the model's cap, for dashboards (written only when it changes)
-- ARGV[1] reservation id
-- ARGV[2] tokens, integer > 0
-- ARGV[3] cap, integer > 0
-- ARGV[4] lease, ms, integer > 0
-- ARGV[5] tenant, or '' for none
-- ARGV[6] tenant cap, integer > 0, or '' for none
-- Returns {code, enqueued, tenant_enqueued}, counts after the call (tenant_enqueued -1 without a tenant):
--   code 1 admitted; 2 duplicate (id already held: lease refreshed, nothing counted again);
--   0 refused by the model cap; -1 refused by the tenant cap;
--   -2 tokens > cap, -3 tokens > tenant cap (could never be admitted: the caller must not wait).

-- Writes after TIME need effects replication: the default since Redis 5, explicit before.
if redis.replicate_commands then redis.replicate_commands() end

local id = ARGV[1]
local tokens = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local tenant = ARGV[5]
local tenant_cap = tonumber(ARGV[6])

-- Only on change: a refusal then writes nothing, so nothing goes to the AOF or the replicas.
if redis.call('GET', KEYS[6]) ~= ARGV[3] then
  redis.call('SET', KEYS[6], ARGV[3])
end

local enqueued = tonumber(redis.call('GET', KEYS[1]) or '0')
local tenant_enqueued = -1
if tenant ~= '' then
  tenant_enqueued = tonumber(redis.call('HGET', KEYS[5], tenant) or '0')
end

if redis.call('HEXISTS', KEYS[2], id) == 1 then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[3], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + lease_ms, id)
  return {2, enqueued, tenant_enqueued}
end
if tokens > cap then
  return {-2, enqueued, tenant_enqueued}
end
if tenant_cap and tokens > tenant_cap then
  return {-3, enqueued, tenant_enqueued}
end
if enqueued + tokens > cap then
  return {0, enqueued, tenant_enqueued}
end
if tenant_cap and tenant_enqueued + tokens > tenant_cap then
  return {-1, enqueued, tenant_enqueued}
end

local now = redis.call('TIME')
enqueued = redis.call('INCRBY', KEYS[1], tokens)
redis.call('HSET', KEYS[2], id, tokens)
redis.call('ZADD', KEYS[3], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + lease_ms, id)
if tenant ~= '' then
  redis.call('HSET', KEYS[4], id, tenant)
  tenant_enqueued = redis.call('HINCRBY', KEYS[5], tenant, tokens)
end
return {1, enqueued, tenant_enqueued}
