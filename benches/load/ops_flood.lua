-- Floods /v1/embeddings with distinct texts (nothing is cached), to keep
-- the model's queue full while another wrk measures the hit path.
local n = 0
math.randomseed(os.time())
request = function()
    n = n + 1
    local body = string.format(
        '{"model":"minilm","input":"flood text %d-%d about caches, queues and sidecars that stay fast"}',
        math.random(1, 1e9), n)
    return wrk.format("POST", "/v1/embeddings", {["Content-Type"] = "application/json"}, body)
end
