-- Warm-up for the package list: every specialist's list in turn, no token.
-- Thread k of n walks lines k+1, k+1+n, ...; BENCH_SPECIALISTS has one id per line.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local ids = {}
for line in io.lines(os.getenv("BENCH_SPECIALISTS")) do ids[#ids + 1] = line end
local step = tonumber(os.getenv("BENCH_THREADS"))
local i

function init(args)
  i = id + 1 - step
end

function request()
  i = i + step
  if i > #ids then i = id + 1 end
  return wrk.format("GET", "/v1/packages?specialist_id=" .. ids[i])
end
