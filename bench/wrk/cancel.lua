-- POST /v1/bookings/{id}/cancel: each request cancels the next unused booking as its
-- own user. BENCH_TARGETS has "booking_id token" per line; thread k of n takes lines
-- k+1, k+1+n, ... so no booking is cancelled twice.
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
    error("bench: out of cancellation targets; write more")
  end
  local booking, token = line:match("(%S+) (%S+)")
  return wrk.format("POST", "/v1/bookings/" .. booking .. "/cancel",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"},
    '{"reason":"Conflito de agenda","reason_code":"schedule_conflict"}')
end
