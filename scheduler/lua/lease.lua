-- Take or renew a lease: a stage lease (one worker validates or aggregates a batch) or a dispatch lock.
-- KEYS[1]  the lease key (tb:{b:<id>}:lease:<stage>, or tb:{m:<model>}:dispatching)
-- ARGV[1]  our token
-- ARGV[2]  lease length in milliseconds
-- Returns 1 when we hold it now (it was free, merely "queued" by the API, or already ours), else 0.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == 'queued' or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
