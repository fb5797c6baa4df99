#!/usr/bin/env bash
# The inference hit path vs the KV GET hit path, on one server.
#
# Starts infercache with fixtures/models/mlp.onnx, stores one 100-byte KV
# value and computes one single-row infer result (JSON), checks that both
# are now memory hits, then runs wrk against
#   infer: POST /v2/models/mlp/infer, the same row every time (infer_hit.lua)
#   kv:    GET /v1/kv/KEY (100-byte value)
# in alternating order, ROUNDS times, same connections and duration.
# Prints req/s, p50, p99 and the ratio infer / kv. Target: ratio >= 0.85 (a
# repeated request is answered from the answer cache, README: Inference).
#
# Environment: ROUNDS (2), DURATION (10s), CONNS (64), THREADS (2),
# PORT (17812), SKIP_BUILD=1.
source "$(dirname "$0")/infer_lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
PORT="${PORT:-17812}"
LUA="$(cd "$(dirname "$0")" && pwd)/infer_hit.lua"
KEY="bench-hit-key"

need wrk curl
build_server
TMP="$(new_tmpdir)"
URL="http://127.0.0.1:$PORT"
start_infercache "$PORT" "$TMP" --model "mlp=$ROOT/fixtures/models/mlp.onnx"

head -c 100 /dev/zero | tr '\0' 'x' >"$TMP/value"
status="$(curl -sS -o /dev/null -w '%{http_code}' -X PUT --data-binary "@$TMP/value" "$URL/v1/kv/$KEY")"
[ "$status" = 204 ] || { echo "PUT answered $status" >&2; exit 1; }
# The body infer_hit.lua sends.
row="$(awk 'BEGIN { for (i = 1; i <= 16; i++) printf "%s%.7g", (i > 1 ? "," : ""), i / 8 - 1 }')"
body="{\"inputs\":[{\"name\":\"x\",\"shape\":[1,16],\"datatype\":\"FP32\",\"data\":[$row]}]}"
x_cache() { curl -sS -D - -o "$TMP/answer" -X POST -H 'Content-Type: application/json' -d "$body" \
    "$URL/v2/models/mlp/infer" | awk -F': *' 'tolower($1) == "x-cache" { print $2 }' | tr -d '\r'; }
first="$(x_cache)" second="$(x_cache)"
[ "$first" = miss ] && [ "$second" = hit ] || {
    echo "infer X-Cache: first '$first', second '$second' (want miss, hit)" >&2
    exit 1
}
tier="$(curl -sS -D - -o /dev/null "$URL/v1/kv/$KEY" |
    awk -F': *' 'tolower($1) == "x-cache-tier" { print $2 }' | tr -d '\r')"
[ "$tier" = memory ] || { echo "KV GET tier '$tier', not memory" >&2; exit 1; }
echo "# infer_hit: $(nproc) cores, wrk -t$THREADS -c$CONNS -d$DURATION --latency"
echo "#   infer answer ($(wc -c <"$TMP/answer") bytes): $(cat "$TMP/answer")"

run_wrk() { # NAME OUT ARGS...
    local name="$1" out="$2"
    shift 2
    quiet_guarded to_file "$out" wrk -t "$THREADS" -c "$CONNS" -d "$DURATION" --latency "$@"
    local bad
    bad="$(wrk_bad "$out")"
    [ "$bad" = 0 ] || { echo "$name: $bad errors / non-2xx" >&2; cat "$out" >&2; exit 1; }
    printf '  %-28s %10s req/s   p50 %7s ms   p99 %7s ms %s\n' \
        "$name" "$(wrk_rps "$out")" "$(wrk_p50 "$out")" "$(wrk_p99 "$out")" "$GUARD_NOTE"
}

wrk -t "$THREADS" -c "$CONNS" -d 2s -s "$LUA" "$URL" >/dev/null
wrk -t "$THREADS" -c "$CONNS" -d 2s "$URL/v1/kv/$KEY" >/dev/null
m0="$(metric infercache_cache_misses_total "$URL")"
INF=() KV=() INF99=() KV99=()
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    if [ $((round % 2)) = 1 ]; then order="infer kv"; else order="kv infer"; fi
    for who in $order; do
        out="$TMP/$who-$round.txt"
        if [ "$who" = infer ]; then
            run_wrk "infer hit (1 row, JSON)" "$out" -s "$LUA" "$URL"
            INF+=("$(wrk_rps "$out")") INF99+=("$(wrk_p99 "$out")")
        else
            run_wrk "kv GET (100 B)" "$out" "$URL/v1/kv/$KEY"
            KV+=("$(wrk_rps "$out")") KV99+=("$(wrk_p99 "$out")")
        fi
    done
    echo "  ratio                        $(ratio "${INF[-1]}" "${KV[-1]}")"
done
misses=$(($(metric infercache_cache_misses_total "$URL") - m0))
[ "$misses" = 0 ] || { echo "infer requests missed the cache $misses times" >&2; exit 1; }
inf="$(mean "${INF[@]}")" kv="$(mean "${KV[@]}")"
echo "summary (mean of $ROUNDS rounds; no misses during the runs)"
echo "  infer hit  mean $inf req/s, p99 per round: ${INF99[*]} ms"
echo "  kv GET     mean $kv req/s, p99 per round: ${KV99[*]} ms"
echo "  ratio      $(ratio "$inf" "$kv")   (target >= 0.85)"
