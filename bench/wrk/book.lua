-- POST /v1/bookings: each request books the next unused target as its employee.
-- BENCH_TARGETS has "specialist_id starts_at token" per line; thread k of n takes
-- lines k+1, k+1+n, ... so no two requests ask for the same slot.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local targets = {}
for line in io.lines(os.getenv("BENCH_TARGETS")) do targets[#targets + 1] = line end
local step = tonumber(os.getenv("BENCH_THREADS"))
local i

function init(args)
  i = id + 1 - step
end

function request()
  i = i + step
  local line = targets[i]
  if line == nil then
    error("bench: out of booking targets; write more")
  end
  local sid, at, token = line:match("(%S+) (%S+) (%S+)")
  return wrk.format("POST", "/v1/bookings",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"},
    '{"specialist_id":"' .. sid .. '","starts_at":"' .. at .. '"}')
end
