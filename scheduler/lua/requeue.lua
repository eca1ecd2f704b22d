-- Put a micro-batch whose lease expired back to pending, so it is dispatched again.
-- KEYS[1]  micro-batch states (tb:{b:<id>}:mb)
-- ARGV[1]  the micro-batch index
-- Returns 1 when it was running (run:<n>) and is now pending; 0 when it was done, dropped or pending.
local state = redis.call('HGET', KEYS[1], ARGV[1])
if state and string.sub(state, 1, 4) == 'run:' then
  redis.call('HSET', KEYS[1], ARGV[1], 'pending')
  return 1
end
return 0
