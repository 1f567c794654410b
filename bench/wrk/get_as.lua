-- GET a random line's path as that line's caller. BENCH_TARGETS has "path token" per line.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local targets = {}
for line in io.lines(os.getenv("BENCH_TARGETS")) do
  local path, token = line:match("(%S+) (%S+)")
  targets[#targets + 1] = {path, "Bearer " .. token}
end

function init(args)
  math.randomseed(17 + id)
end

function request()
  local t = targets[math.random(#targets)]
  return wrk.format("GET", t[1], {["Authorization"] = t[2]})
end
