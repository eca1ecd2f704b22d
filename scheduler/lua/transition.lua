-- Move a batch from one stage to another, atomically, with its timestamp.
-- KEYS[1]  the batch hash (tb:{b:<id>}:batch)
-- ARGV[1]  the target stage
-- ARGV[2]  comma-separated stages the batch may be in (from the lifecycle table in lifecycle.py)
-- ARGV[3..] field, value pairs to set in the same step (file ids, errors, usage)
-- Returns {1, from_stage} when moved, {0, current_stage} when the batch was not in an allowed stage,
-- {0, false} when the batch does not exist. Sets <target>_at to the server's TIME (seconds).
local current = redis.call('HGET', KEYS[1], 'stage')
if not current then
  return {0, false}
end
local allowed = false
for s in string.gmatch(ARGV[2], '[^,]+') do
  if s == current then allowed = true end
end
if not allowed then
  return {0, current}
end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'stage', ARGV[1], ARGV[1] .. '_at', now[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return {1, current}
