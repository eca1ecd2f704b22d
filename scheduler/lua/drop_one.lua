-- Drop one dispatched micro-batch that has not started: its batch is being cancelled or expired, and a
-- micro-batch still waiting in the broker is not in flight.
-- KEYS[1]  the batch hash     (tb:{b:<id>}:batch)
-- KEYS[2]  micro-batch states  (tb:{b:<id>}:mb)
-- KEYS[3]  micro-batch meta    (tb:{b:<id>}:mbmeta)
-- ARGV[1]  the micro-batch index
-- ARGV[2]  the attempt this delivery carries
-- Returns {1, last} when dropped (last = 1 when that finished the batch); {0, 0} when the state was not
-- run:<attempt> (already done, dropped, or dispatched again).
if redis.call('HGET', KEYS[2], ARGV[1]) ~= 'run:' .. ARGV[2] then
  return {0, 0}
end
redis.call('HSET', KEYS[2], ARGV[1], 'drop')
local meta = redis.call('HGET', KEYS[3], ARGV[1]) or '||0'
redis.call('HINCRBY', KEYS[1], 'failed', tonumber(string.match(meta, '([^|]*)$')))
local finished = redis.call('HINCRBY', KEYS[1], 'microbatches_finished', 1)
local total = tonumber(redis.call('HGET', KEYS[1], 'microbatches') or '0')
if finished >= total then
  return {1, 1}
end
return {1, 0}
