-- GET BENCH_PATH over and over: a trivial endpoint, what the framework alone costs.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local path = os.getenv("BENCH_PATH")

function request()
  return wrk.format("GET", path)
end
