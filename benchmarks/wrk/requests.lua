-- wrk script for the Hollang benchmarks: one request kind, its bodies or paths from a file.
--   wrk ... -s requests.lua URL -- METHOD FILE
-- FILE holds one request per line: a JSON body (POST) or a path (GET). Requests cycle through
-- the lines, each connection from its own offset. done() prints one JSON line, prefixed
-- "WRK_RESULT ", with the counts and the latency percentiles (microseconds).

local method = "GET"
local lines = {}
local counter = 0

function init(args)
  method = args[1]
  for line in io.lines(args[2]) do
    if #line > 0 then lines[#lines + 1] = line end
  end
  counter = math.random(#lines)
end

function request()
  counter = counter % #lines + 1
  local line = lines[counter]
  if method == "POST" then
    return wrk.format("POST", wrk.path, {["Content-Type"] = "application/json"}, line)
  end
  return wrk.format("GET", line)
end

function done(summary, latency, requests)
  local points = {}
  for _, p in ipairs({1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 99, 99.9}) do
    points[#points + 1] = string.format('"%s": %d', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, ' ..
    '"percentiles": {%s}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(points, ", ")))
end
