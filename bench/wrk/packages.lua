-- GET /v1/packages?specialist_id={random}: the public package list, no token.
-- Reads BENCH_SPECIALISTS (one id per line).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local ids = {}
for line in io.lines(os.getenv("BENCH_SPECIALISTS")) do ids[#ids + 1] = line end

function init(args)
  math.randomseed(13 + id)
end

function request()
  return wrk.format("GET", "/v1/packages?specialist_id=" .. ids[math.random(#ids)])
end
