-- wrk script: the same single-row KServe v2 infer request every time (a
-- cache hit after the first), JSON in and out.
--
-- Environment: MODEL (mlp), WIDTH (16).
--
-- Usage: wrk -t2 -c64 -d10s --latency -s benches/load/infer_hit.lua http://127.0.0.1:PORT

local width = tonumber(os.getenv("WIDTH") or "16")
local data = {}
for i = 1, width do data[i] = string.format("%.7g", i / 8 - 1) end

wrk.method = "POST"
wrk.path = "/v2/models/" .. (os.getenv("MODEL") or "mlp") .. "/infer"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"x","shape":[1,' .. width .. '],"datatype":"FP32","data":['
   .. table.concat(data, ",") .. ']}]}'
