-- Record a micro-batch's results once, however often it ran: run:<n> or pending -> done:<attempt>.
-- KEYS[1]  the batch hash    (tb:{b:<id>}:batch)
-- KEYS[2]  micro-batch states (tb:{b:<id>}:mb)
-- ARGV[1]  the micro-batch index
-- ARGV[2]  the attempt whose result file is kept
-- ARGV[3]  requests that succeeded      ARGV[4] requests that failed
-- ARGV[5]  prompt tokens                ARGV[6] completion tokens
-- ARGV[7]  cost (USD, successful requests only)
-- ARGV[8]  the micro-batch's planned tokens (for tokens_done)
-- Returns {1, last} when this call recorded it (last = 1 when it was the batch's final micro-batch),
-- {0, 0} when it was already done or dropped: counters move once per request.
local state = redis.call('HGET', KEYS[2], ARGV[1])
if not state or string.sub(state, 1, 4) == 'done' or state == 'drop' then
  return {0, 0}
end
redis.call('HSET', KEYS[2], ARGV[1], 'done:' .. ARGV[2])
redis.call('HINCRBY', KEYS[1], 'completed', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'prompt_tokens', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'completion_tokens', ARGV[6])
redis.call('HINCRBYFLOAT', KEYS[1], 'cost', ARGV[7])
redis.call('HINCRBY', KEYS[1], 'tokens_done', ARGV[8])
local finished = redis.call('HINCRBY', KEYS[1], 'microbatches_finished', 1)
local total = tonumber(redis.call('HGET', KEYS[1], 'microbatches') or '0')
if finished >= total then
  return {1, 1}
end
return {1, 0}
