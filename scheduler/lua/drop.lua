-- Drop every pending micro-batch of a batch being cancelled or expired; running ones finish.
-- KEYS[1]  the batch hash     (tb:{b:<id>}:batch)
-- KEYS[2]  micro-batch states  (tb:{b:<id>}:mb)
-- KEYS[3]  micro-batch meta    (tb:{b:<id>}:mbmeta, index -> "model|tokens|requests")
-- ARGV[1]  the reason to note on the batch ("cancelled" or "expired"); a reason already set is kept
-- Returns {dropped micro-batches, last} where last = 1 when nothing is left running, so the caller
-- (the one that made it so) finalizes. Dropped requests count as failed at once: counts stay live.
if not redis.call('HGET', KEYS[1], 'end_reason') then
  redis.call('HSET', KEYS[1], 'end_reason', ARGV[1])
end
local states = redis.call('HGETALL', KEYS[2])
local dropped, requests = 0, 0
for i = 1, #states, 2 do
  if states[i + 1] == 'pending' then
    redis.call('HSET', KEYS[2], states[i], 'drop')
    local meta = redis.call('HGET', KEYS[3], states[i]) or '||0'
    requests = requests + tonumber(string.match(meta, '([^|]*)$'))
    dropped = dropped + 1
  end
end
redis.call('HINCRBY', KEYS[1], 'failed', requests)
local finished = redis.call('HINCRBY', KEYS[1], 'microbatches_finished', dropped)
local total = tonumber(redis.call('HGET', KEYS[1], 'microbatches') or '0')
if dropped > 0 and finished >= total then
  return {dropped, 1}
end
return {dropped, 0}
