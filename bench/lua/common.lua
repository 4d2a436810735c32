-- Shared by the bench's wrk scripts: thread numbering and the JSON summary the harness reads.
-- Loaded with dofile() from each script; see bench/loadgen.py for how wrk is run.

local next_thread = 0
local negative_buckets = 0  -- would mean the correction was not undone exactly

-- Runs in wrk's main Lua state, once per thread before it starts: number the threads, so a
-- script can split its requests between them (each thread has its own Lua state).
function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

-- The latencies the clients saw, as (values, counts) in ascending order of value.
--
-- Before done() sees it, wrk 4 "corrects" its latency histogram for coordinated omission: for
-- every latency n of at least twice an expected interval e (run time / (requests /
-- connections)), it adds samples at n - e, n - 2e, ... down to e. That extrapolation assumes
-- one request per connection per batch (with pipelining it over-corrects), and samples it adds
-- below the fastest real one are then skipped by its percentile(), which returns 0. We want
-- what the clients saw, so the correction is undone here, exactly: walking the buckets from
-- the top, each bucket above e holds its own count plus the sum of the real counts e, 2e, ...
-- above it, kept per residue modulo e. BENCH_WRK_CONNECTIONS (set by the harness) is the
-- connection count wrk used in its formula.
local function client_latencies(latency, summary)
  local values, counts = {}, {}
  for i = 1, #latency do
    values[i], counts[i] = latency(i)
  end
  local connections = tonumber(os.getenv("BENCH_WRK_CONNECTIONS") or "0")
  local per_connection = connections > 0 and math.floor(summary.requests / connections) or 0
  if per_connection == 0 then
    return values, counts
  end
  local expected = math.floor(summary.duration / per_connection)
  local carry = {}
  for i = #values, 1, -1 do
    local value = values[i]
    if expected > 0 and value > expected then
      local residue = value % expected
      local real = counts[i] - (carry[residue] or 0)
      if real < 0 then
        negative_buckets = negative_buckets + 1
        real = 0
      end
      counts[i] = real
      carry[residue] = (carry[residue] or 0) + real
    end
  end
  return values, counts
end

local function percentile(values, counts, total, p)
  local rank = math.max(1, math.ceil(total * p / 100))
  local seen = 0
  for i = 1, #values do
    seen = seen + counts[i]
    if seen >= rank then
      return values[i]
    end
  end
  return 0
end

-- Runs once at the end, in the main state: one line of JSON, latencies in microseconds.
function done(summary, latency, requests)
  local values, counts = client_latencies(latency, summary)
  local total, sum, max = 0, 0, 0
  for i = 1, #values do
    total = total + counts[i]
    sum = sum + values[i] * counts[i]
    if counts[i] > 0 then
      max = values[i]
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "samples": %d, ' ..
    '"negative_buckets": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes, total, negative_buckets,
    e.connect, e.read, e.write, e.status, e.timeout,
    percentile(values, counts, total, 50), percentile(values, counts, total, 90),
    percentile(values, counts, total, 99), max, total > 0 and sum / total or 0))
end
