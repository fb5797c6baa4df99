-- wrk script: KServe v2 infer requests of one FP32 row each, every row new
-- (random), so no request can be answered from the cache.
--
-- Each wrk thread seeds its own generator from the run's start time and its
-- thread number; a row is WIDTH floats printed with 7 significant digits,
-- so two requests repeat a row with probability ~0 (16 x 2^23 values).
--
-- No `response` callback (it would make wrk parse every response in Lua,
-- costing client CPU on a 2-core machine); infer_mlp.sh checks afterwards
-- from /metrics that every request was a miss.
--
-- Environment: MODEL (mlp), WIDTH (16), ROWS (rows per request, 1),
-- CACHE_CONTROL (header value, e.g. "no-store"; default none).
--
-- Usage: wrk -t2 -c64 -d10s --latency -s benches/load/infer_unique.lua http://127.0.0.1:PORT

local started = os.time()
local threads_seen = 0

function setup(thread)
   threads_seen = threads_seen + 1
   thread:set("thread_no", threads_seen)
   thread:set("run_started", started)
end

local path, headers, width, rows, head, tail, parts

function init(args)
   math.randomseed(run_started * 1000 + thread_no * 7919)
   -- LuaJIT's first draws after seeding are correlated with the seed.
   for _ = 1, 100 do math.random() end
   path = "/v2/models/" .. (os.getenv("MODEL") or "mlp") .. "/infer"
   width = tonumber(os.getenv("WIDTH") or "16")
   rows = tonumber(os.getenv("ROWS") or "1")
   headers = { ["Content-Type"] = "application/json" }
   local cc = os.getenv("CACHE_CONTROL")
   if cc and cc ~= "" then headers["Cache-Control"] = cc end
   head = '{"inputs":[{"name":"x","shape":[' .. rows .. ',' .. width .. '],"datatype":"FP32","data":['
   tail = ']}]}'
   parts = {}
end

function request()
   for i = 1, width * rows do
      parts[i] = string.format("%.7g", math.random() * 2 - 1)
   end
   return wrk.format("POST", path, headers, head .. table.concat(parts, ",") .. tail)
end
