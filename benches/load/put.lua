-- wrk script: durable PUTs of 100-byte values, every request to a new key.
--
-- `setup` (run once per wrk thread, in the main Lua state) hands each
-- thread its number and the run's start time; each thread then counts its
-- own requests, so keys are `put-<start>-<thread>-<n>`: distinct across
-- threads, requests and runs. Every PUT is an insert, like
-- `redis-benchmark -r <large keyspace>`.
--
-- No `response` callback: defining one makes wrk parse every response in
-- Lua, which costs client CPU on a 2-core machine. wrk's own
-- "Non-2xx or 3xx responses" line reports refused writes (429, 5xx).
--
-- Usage: wrk -t2 -c64 -d10s --latency -s benches/load/put.lua http://127.0.0.1:PORT
-- VALUE_SIZE (environment, default 100) changes the value size.

local started = tostring(os.time())
local threads_seen = 0

function setup(thread)
   threads_seen = threads_seen + 1
   thread:set("thread_no", threads_seen)
   thread:set("run_started", started)
end

local prefix, counter, body, headers

function init(args)
   prefix = "/v1/kv/put-" .. run_started .. "-" .. thread_no .. "-"
   counter = 0
   body = string.rep("v", tonumber(os.getenv("VALUE_SIZE") or "100"))
   headers = { ["Content-Type"] = "application/octet-stream" }
end

function request()
   counter = counter + 1
   return wrk.format("PUT", prefix .. counter, headers, body)
end
