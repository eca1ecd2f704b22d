-- bucket.lua: take COST tokens from a token bucket that refills continuously, by Redis's clock.
-- The key's expiry is set in the same script (never INCR then EXPIRE in two calls): after TTL the bucket
-- would be full anyway, so dropping the key changes nothing.
--
-- KEYS[1] bucket  hash: tokens -> level after the last take, ts -> when (seconds since the epoch)
-- ARGV[1] cost, integer > 0 (<= capacity, checked by the caller)
-- ARGV[2] capacity, integer > 0
-- ARGV[3] refill per second, number > 0
-- ARGV[4] ttl, ms, integer > 0: time to refill from empty, plus a margin
-- Returns {allowed (1 or 0), remaining tokens, retry after (seconds, 0 when allowed)}; the two numbers
-- as strings, because Redis truncates Lua numbers in replies to integers.

if redis.replicate_commands then redis.replicate_commands() end

local cost = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local level = tonumber(state[1])
local ts = tonumber(state[2])
if level == nil or ts == nil then
  level, ts = capacity, now
end
local elapsed = now - ts
if elapsed < 0 then
  elapsed = 0  -- a failover onto a server whose clock is behind: refill nothing rather than go negative
end
level = math.min(capacity, level + elapsed * rate)

local allowed, retry_after = 0, 0
if level >= cost then
  level = level - cost
  allowed = 1
else
  retry_after = (cost - level) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', level), 'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {allowed, string.format('%.17g', level), string.format('%.17g', retry_after)}
