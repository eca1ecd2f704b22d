-- Claim a pending micro-batch for dispatch: pending -> run:<attempt>.
-- KEYS[1]  the batch hash            (tb:{b:<id>}:batch)
-- KEYS[2]  micro-batch states         (tb:{b:<id>}:mb)
-- KEYS[3]  micro-batch attempt counts (tb:{b:<id>}:mbattempts)
-- ARGV[1]  the micro-batch index
-- Returns {attempt, stage} when claimed; {0, reason} when it must not run (the batch is not runnable,
-- is being cancelled or expired, or the micro-batch is not pending: already running, done or dropped).
local stage = redis.call('HGET', KEYS[1], 'stage')
if stage ~= 'queued' and stage ~= 'in_progress' then
  return {0, stage or 'missing'}
end
if redis.call('HGET', KEYS[1], 'end_reason') then
  return {0, 'ending'}
end
local state = redis.call('HGET', KEYS[2], ARGV[1])
if state ~= 'pending' then
  return {0, state or 'missing'}
end
local attempt = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('HSET', KEYS[2], ARGV[1], 'run:' .. attempt)
return {attempt, stage}
