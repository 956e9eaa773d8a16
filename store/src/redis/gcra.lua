-- keygate's GCRA (keygate::RateLimit::check) on a chain of keys, all or nothing.
--
-- KEYS: one per budget, in the order keygate charges them (the key, then its ancestors).
-- ARGV[1]: now, integer microseconds since the epoch (decimal i64).
-- ARGV[2]: extra milliseconds to keep a key after its TAT has passed (clock-skew margin).
-- ARGV[2 + 2i - 1], ARGV[2 + 2i]: interval and tolerance of KEYS[i], microseconds (decimal i64).
-- Each key holds its TAT as decimal i64 microseconds.
--
-- Returns {1} when every budget admits the request (and then charges all of them), or
-- {0, at} when one refuses (and then charges none): `at` is the decimal i64 microsecond at which
-- the first refusing budget, in KEYS order, would admit it. This is keygate's sequential check
-- with its refunds, done atomically.
--
-- Redis Lua numbers are doubles, exact only up to 2^53, and keygate's arithmetic is i64
-- microseconds (a tolerance saturates at i64::MAX). So every i64 here is a pair
-- {seconds, micros} with 0 <= micros < 10^6: the seconds stay below 2^45 even for sums of two
-- i64s, and every operation is exact over the whole i64 range.
local M = 1000000
local MAX = {9223372036854, 775807}   -- i64::MAX
local MIN = {-9223372036855, 224192}  -- i64::MIN

local function parse(text)
  local negative = string.sub(text, 1, 1) == '-'
  if negative then text = string.sub(text, 2) end
  local n = string.len(text)
  local s, us = 0, tonumber(text)
  if n > 6 then
    s = tonumber(string.sub(text, 1, n - 6))
    us = tonumber(string.sub(text, n - 5))
  end
  if s == nil or us == nil then return redis.error_reply('keygate: not an integer: ' .. text) end
  if not negative then return {s, us} end
  if us == 0 then return {-s, 0} end
  return {-s - 1, M - us}
end

local function format(v)
  local s, us, sign = v[1], v[2], ''
  if s < 0 then
    sign = '-'
    if us == 0 then s = -s else s, us = -s - 1, M - us end
  end
  if s == 0 then return sign .. string.format('%d', us) end
  return sign .. string.format('%d%06d', s, us)
end

local function less(a, b)
  return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])
end

local function add(a, b)
  local s, us = a[1] + b[1], a[2] + b[2]
  if us >= M then s, us = s + 1, us - M end
  return {s, us}
end

local function sub(a, b)
  local s, us = a[1] - b[1], a[2] - b[2]
  if us < 0 then s, us = s - 1, us + M end
  return {s, us}
end

local function arg(i)
  local v = parse(ARGV[i])
  if v.err then error(v.err) end
  return v
end

if #ARGV ~= 2 + 2 * #KEYS then
  return redis.error_reply('keygate: expected 2 + 2 * #KEYS arguments')
end
local now = arg(1)
local margin_ms = tonumber(ARGV[2])
-- The TATs this request will write, by key: a key named twice is charged twice, in order.
local next_tat = {}
local order = {}
for i, key in ipairs(KEYS) do
  local interval, tolerance = arg(1 + 2 * i), arg(2 + 2 * i)
  local tat = next_tat[key]
  if tat == nil then
    local stored = redis.call('GET', key)
    if stored then
      tat = parse(stored)
      if tat.err then error(tat.err) end
    else
      -- A fresh (or expired) budget: as keygate's `state.tat.unwrap_or(now)`.
      tat = now
    end
  end
  -- earliest = tat.saturating_sub(tolerance); tolerance >= 0, so only i64::MIN can be crossed.
  -- (Below i64::MIN, earliest <= now either way: the clamp only keeps the mirror exact.)
  local earliest = sub(tat, tolerance)
  if less(earliest, MIN) then earliest = MIN end
  if less(now, earliest) then return {0, format(earliest)} end
  local base = tat
  if less(tat, now) then base = now end
  local nxt = add(base, interval)
  -- checked_add failed: the arrival cannot be recorded, refuse until the end of time.
  if less(MAX, nxt) then return {0, format(MAX)} end
  if next_tat[key] == nil then table.insert(order, key) end
  next_tat[key] = nxt
end
for _, key in ipairs(order) do
  local tat = next_tat[key]
  -- Keep the key until its TAT has passed (then it is as good as fresh), plus the margin.
  local ahead = sub(tat, now)
  if ahead[1] < 10000000000 then
    local ms = ahead[1] * 1000 + math.ceil(ahead[2] / 1000) + margin_ms
    redis.call('SET', key, format(tat), 'PX', ms)
  else
    -- Over three centuries ahead: no expiry (SET drops any earlier one).
    redis.call('SET', key, format(tat))
  end
end
return {1}
