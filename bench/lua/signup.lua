-- Signs up a new account per request: every email is unique (run id, thread, counter).
--
-- Arguments (after "--"): RUN_ID PASSWORD. RUN_ID must be new for every wrk run against the
-- same database, or an email repeats and the answer is a 409 (counted as an error).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local run_id, password
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  run_id = args[1]
  password = args[2]
end

function request()
  counter = counter + 1
  local body = string.format('{"email":"su-%s-%d-%d@example.com","password":"%s"}',
    run_id, thread_id or 0, counter, password)
  return wrk.format("POST", "/auth/signup", headers, body)
end
