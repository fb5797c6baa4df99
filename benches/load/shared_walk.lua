-- wrk script: GET /v1/kv/<PREFIX><i>, every request a distinct key.
--
-- `setup` hands each wrk thread its number; thread t of T walks keys
-- i = t-1, t-1+T, t-1+2T, ... (0-based), so the threads together walk
-- 0, 1, 2, ... once, and no key is asked twice in a run while i < KEYS.
-- Past KEYS a thread starts over (the repeats are then local hits, which
-- shared_hit.sh detects from the server's metrics and refuses).
--
-- No `response` callback (it would make wrk parse every response in Lua);
-- wrk's "Non-2xx or 3xx responses" line counts misses (404), and the
-- server's `infercache_cache_hits_total{tier=...}` tells which tier
-- answered.
--
-- Environment: KEY_PREFIX (default "sh-"), KEYS (default 1000000).
-- Usage: KEYS=N wrk -t2 -c64 -d5s -s benches/load/shared_walk.lua http://127.0.0.1:PORT

local threads_seen = 0

function setup(thread)
   threads_seen = threads_seen + 1
   thread:set("thread_no", threads_seen)
end

local prefix, keys, step, index

function init(args)
   prefix = "/v1/kv/" .. (os.getenv("KEY_PREFIX") or "sh-")
   keys = tonumber(os.getenv("KEYS") or "1000000")
   step = tonumber(os.getenv("WRK_THREADS") or "1")
   index = thread_no - 1 - step
end

function request()
   index = index + step
   if index >= keys then
      index = thread_no - 1
   end
   return wrk.format("GET", prefix .. index)
end
