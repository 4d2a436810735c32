-- Replays the requests listed in a file, round robin, as fast as the connections allow.
--
-- Arguments (after "--"): FILE [GROUP [THREADS]].
-- FILE has one request a line, five tab-separated fields: METHOD, PATH, TOKEN ("-" for none),
-- USER (the owner's id, sent as X-User-Id for the reference apps; "-" for none), BODY (JSON, or
-- empty). Every GROUP consecutive lines are sent together, pipelined on one
-- connection: the server answers them in order, so with GROUP 2 a PUT is always done before
-- the GET that follows it. With THREADS wrk threads, each takes every THREADS-th group, so no
-- two threads send the same request (it matters for DELETE).
--
-- All requests are formatted once, in init(); request() only picks the next string.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local batches = {}
local position = 0

function init(args)
  local group = tonumber(args[2] or "1")
  local threads = tonumber(args[3] or "1")
  local formatted = {}
  for line in io.lines(args[1]) do
    local method, path, token, user, body =
      line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {}
    if token ~= "-" then
      headers["Authorization"] = "Bearer " .. token
    end
    if user ~= "-" then
      headers["X-User-Id"] = user
    end
    if body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    formatted[#formatted + 1] = wrk.format(method, path, headers, body)
  end
  for first = 1, #formatted - group + 1, group do
    local batch = (first - 1) / group
    if batch % threads == (thread_id or 0) then
      batches[#batches + 1] = table.concat(formatted, "", first, first + group - 1)
    end
  end
  assert(#batches > 0, "no requests for this thread in " .. args[1])
end

function request()
  position = position % #batches + 1
  return batches[position]
end
