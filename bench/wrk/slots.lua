-- GET /v1/specialists/{random}/slots for a fixed window, as one signed-in user.
-- Reads BENCH_SPECIALISTS (one id per line), BENCH_TOKEN, BENCH_FROM, BENCH_TO.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local ids = {}
for line in io.lines(os.getenv("BENCH_SPECIALISTS")) do ids[#ids + 1] = line end
local query = "/slots?from=" .. os.getenv("BENCH_FROM") .. "&to=" .. os.getenv("BENCH_TO")
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")

function init(args)
  math.randomseed(7 + id)
end

function request()
  return wrk.format("GET", "/v1/specialists/" .. ids[math.random(#ids)] .. query)
end
