-- One wrk script for every scenario: `wrk ... -s scenario.lua URL -- <mode>`.
-- Per-thread data (tokens, task ids, versions, cursors) comes from the file in $BENCH_DATA,
-- written by bench/harness.py. Each thread owns its tasks, so PATCH versions never collide.
-- A PATCH sends the version its task's last answer carried, as a client does: wrk calls
-- request() once more than it sends (thread 1's first call only checks the script), so a
-- version counted when its PATCH is generated runs one ahead of the stored one from then on.

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("index", thread_count)
end

local me, mode, counter, versions
local json_headers

function init(args)
  local data = dofile(os.getenv("BENCH_DATA"))
  mode = args[1]
  counter = 0
  versions = {}
  me = data.threads and data.threads[index]
  if me then
    json_headers = {
      ["Authorization"] = "Bearer " .. me.token,
      ["Content-Type"] = "application/json",
    }
    pat_headers = { ["Authorization"] = "Bearer " .. me.pat }
    keyed_headers = {
      ["Authorization"] = "Bearer " .. me.token,
      ["Content-Type"] = "application/json",
    }
    -- Unique per run and thread: a key is kept 24 hours, and runs share the database.
    key_prefix = string.format("bench-%d-%d-%d-", os.time(), index, math.random(1e9))
    for i, id in ipairs(me.patch_tasks) do
      versions[id] = me.patch_versions and me.patch_versions[i] or 1
    end
    if mode == "patch_task" or mode == "patch_task_hooked" then
      response = learn_version
    end
    login_body = '{"email":"' .. me.login_email .. '","password":"' .. data.password .. '"}'
  end
  if data.big then
    big_headers = { ["Authorization"] = "Bearer " .. data.big.token }
    big_cursor = data.big.cursor
    big_offset_page = data.big.offset_page
  end
end

local function next_task(list)
  counter = counter + 1
  local i = (counter - 1) % #list + 1
  return i, list[i]
end

-- The task's id comes first in both servers' answers, before any category's.
function learn_version(status, headers, body)
  if status == 200 then
    local id, version = string.match(body, '"id":"([^"]+)".-"version":(%d+)')
    if id then
      versions[id] = tonumber(version)
    end
  end
end

function request()
  if mode == "get_task" then
    local _, id = next_task(me.tasks)
    return wrk.format("GET", "/api/v1/tasks/" .. id, json_headers)
  elseif mode == "list_tasks" then
    return wrk.format("GET", "/api/v1/tasks?limit=20", json_headers)
  elseif mode == "get_task_pat" then
    local _, id = next_task(me.tasks)
    return wrk.format("GET", "/api/v1/tasks/" .. id, pat_headers)
  elseif mode == "create_task" or mode == "create_task_hooked" then
    counter = counter + 1
    local body = '{"title":"bench task ' .. counter .. '","priority":"high"}'
    return wrk.format("POST", "/api/v1/tasks", json_headers, body)
  elseif mode == "create_task_keyed" then
    counter = counter + 1
    local body = '{"title":"bench task ' .. counter .. '","priority":"high"}'
    keyed_headers["Idempotency-Key"] = key_prefix .. counter
    return wrk.format("POST", "/api/v1/tasks", keyed_headers, body)
  elseif mode == "patch_task" or mode == "patch_task_hooked" then
    local _, id = next_task(me.patch_tasks)
    local body = '{"title":"patched ' .. counter .. '","version":' .. versions[id] .. '}'
    return wrk.format("PATCH", "/api/v1/tasks/" .. id, json_headers, body)
  elseif mode == "me" then
    return wrk.format("GET", "/api/v1/users/me", json_headers)
  elseif mode == "login" then
    return wrk.format("POST", "/api/v1/auth/login", { ["Content-Type"] = "application/json" }, login_body)
  elseif mode == "live" then
    return wrk.format("GET", "/health/live")
  elseif mode == "big_first" then
    return wrk.format("GET", "/api/v1/tasks?limit=20", big_headers)
  elseif mode == "big_offset" then
    return wrk.format("GET", "/api/v1/tasks?limit=20&page=" .. big_offset_page, big_headers)
  elseif mode == "big_cursor" then
    return wrk.format("GET", "/api/v1/tasks?limit=20&cursor=" .. big_cursor, big_headers)
  end
  error("unknown mode " .. tostring(mode))
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
