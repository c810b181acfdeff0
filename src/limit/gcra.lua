-- GCRA for one key, decided and stored atomically in one round trip.
--
-- KEYS[1]  the bucket key
-- ARGV[1]  emission interval T in microseconds (time one request costs)
-- ARGV[2]  burst B (requests a fresh key may send at once)
--
-- Returns { allowed (1|0), remaining, reset_us, retry_after_us }.
--
-- "Now" is the Redis server's TIME, so gateways whose clocks disagree still share one
-- timeline (Redis >= 5 replicates the script's effects, not the script, so TIME is safe).
-- The stored value is the theoretical arrival time (TAT) in microseconds; the key expires
-- when its bucket would be full again, so idle keys cost Redis nothing.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tolerance = emission * (burst - 1)

local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end

local earliest = tat - tolerance
if now < earliest then
  return { 0, 0, tat - now, earliest - now }
end

local new_tat = tat + emission
local backlog = new_tat - now
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(backlog / 1000))
local remaining = math.floor((tolerance + emission - backlog) / emission)
return { 1, remaining, backlog, 0 }
