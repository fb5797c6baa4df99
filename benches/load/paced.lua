-- wrk script: pace each connection, to read latency below saturation.
--
-- wrk calls `delay()` before each request and waits that many
-- milliseconds, so each connection sends about one request per
-- (PACED_MS + response time). With 32 connections and PACED_MS=1 that is
-- roughly 25k req/s, a third of what 2 cores saturate at. wrk still
-- measures from the (delayed) send, so queueing behind a slow response is
-- not counted (no coordinated-omission correction, unlike wrk2).
--
-- Usage: PACED_MS=1 wrk -t2 -c32 -d10s --latency -s benches/load/paced.lua URL

local pause = tonumber(os.getenv("PACED_MS") or "1")

function delay()
   return pause
end
