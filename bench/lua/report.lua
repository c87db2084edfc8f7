-- wrk script for azbroker's benchmarks (bench/src/loadgen.rs writes it next to each run).
--
-- Without BENCH_KEYS, wrk sends its one pre-built request (path and -H headers from the
-- command line) as fast as it can. With BENCH_KEYS=N, every request asks for one of N
-- resources at random: path = BENCH_PREFIX .. zero-padded number .. BENCH_SUFFIX.
-- After the run, one line "BENCH_JSON {...}" carries the totals and latency percentiles (us).

local keys = tonumber(os.getenv("BENCH_KEYS") or "0")
local prefix = os.getenv("BENCH_PREFIX") or "/"
local suffix = os.getenv("BENCH_SUFFIX") or ""
local width = os.getenv("BENCH_WIDTH") or "6"
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(seed or 1)
end

if keys > 0 then
  local fmt = "%0" .. width .. "d"
  request = function()
    return wrk.format(nil, prefix .. string.format(fmt, math.random(0, keys - 1)) .. suffix)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
