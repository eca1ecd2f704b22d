-- Take a tenant out of a model's rotation, but only if its queue is really empty (a push may race).
-- KEYS[1]  the tenant's queue for the model (tb:{m:<model>}:q:<tenant>)
-- KEYS[2]  the model's set of tenants with work (tb:{m:<model>}:tenants)
-- ARGV[1]  the tenant
-- Returns 1 when removed, 0 when the queue had entries.
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
return 0
