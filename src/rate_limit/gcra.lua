if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local base = math.max(tat, now)
local new_tat = base + interval * cost
local limit_at = now + tau
if new_tat <= limit_at then
  if ARGV[4] ~= '1' then
    redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
  end
  return {1, math.floor((limit_at - new_tat) / interval), new_tat - now, 0}
end
return {0, 0, base - now, new_tat - limit_at}
