-- Shared by the wrk scripts: per-thread status counts, summed in done().
-- wrk runs one Lua state per thread; setup() keeps a handle on each.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

statuses = {}

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      total[code] = (total[code] or 0) + n
    end
  end
  for code, n in pairs(total) do
    io.write(string.format("STATUS %d %d\n", code, n))
  end
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("PCT %s %.3f\n", p, latency:percentile(p) / 1000))
  end
  io.write(string.format("MAX %.3f\n", latency.max / 1000))
end
