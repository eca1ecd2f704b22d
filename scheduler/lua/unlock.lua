-- Release a lock only if we still hold it.
-- KEYS[1]  the lock key
-- ARGV[1]  our token
-- Returns 1 when released, 0 when it was not ours (expired and taken by another).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
