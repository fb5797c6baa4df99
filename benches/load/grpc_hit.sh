#!/usr/bin/env bash
# Single-row infer hits over gRPC vs binary REST, same server, same client,
# same concurrency.
#
# Starts infercache with fixtures/models/mlp.onnx, computes one single-row
# result, checks that both encodings of that row are then memory hits (one
# key whatever the protocol), and runs h2load (HTTP/2 with prior knowledge,
# the lightest client that speaks both) against
#   grpc: POST /inference.GRPCInferenceService/ModelInfer (raw_input_contents)
#   rest: POST /v2/models/mlp/infer, Triton's binary tensor extension
# in alternating order, ROUNDS times, with CONNS connections of STREAMS
# concurrent streams each. Prints req/s, mean latency and grpc / rest.
# Fails if any request failed or missed the cache.
#
# Environment: ROUNDS (2), DURATION (10, seconds), CONNS (64), STREAMS (1),
# THREADS (2), PORT (17813), SKIP_BUILD=1.
source "$(dirname "$0")/infer_lib.sh"
source "$(dirname "$0")/grpc_lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-64}"
STREAMS="${STREAMS:-1}"
THREADS="${THREADS:-2}"
PORT="${PORT:-17813}"
HERE="$(cd "$(dirname "$0")" && pwd)"

need h2load curl python3
build_server
TMP="$(new_tmpdir)"
URL="http://127.0.0.1:$PORT"
start_infercache "$PORT" "$TMP" --model "mlp=$ROOT/fixtures/models/mlp.onnx"
python3 "$HERE/grpc_body.py" "$TMP"
header_len="$(cat "$TMP/rest.header_len")"

# One request of each kind with curl; prints the response's x-cache and,
# for gRPC, grpc-status (a header or a trailer).
grpc_once() {
    curl -sS --http2-prior-knowledge -D - -o /dev/null -X POST \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        --data-binary "@$TMP/grpc.bin" "$URL/inference.GRPCInferenceService/ModelInfer" |
        awk -F': *' 'tolower($1) ~ /^(x-cache|grpc-status)$/ { printf "%s=%s ", tolower($1), $2 }' | tr -d '\r'
}
rest_once() {
    curl -sS -D - -o /dev/null -X POST -H 'content-type: application/octet-stream' \
        -H "inference-header-content-length: $header_len" \
        --data-binary "@$TMP/rest.bin" "$URL/v2/models/mlp/infer" |
        awk -F': *' 'tolower($1) == "x-cache" { printf "x-cache=%s ", $2 }' | tr -d '\r'
}
first="$(rest_once)" second="$(grpc_once)" third="$(rest_once)"
[ "$first" = "x-cache=miss " ] && [ "$second" = "x-cache=hit grpc-status=0 " ] &&
    [ "$third" = "x-cache=hit " ] || {
    echo "want REST miss, gRPC hit (status 0), REST hit; got '$first' '$second' '$third'" >&2
    exit 1
}
echo "# grpc_hit: $(nproc) cores, h2load -t$THREADS -c$CONNS -m$STREAMS -D$DURATION (h2c)"

h2_rps() { awk '/^finished in/ { print $4 }' "$1"; }
h2_mean() { to_ms "$(awk '/^time for request:/ { print $6 }' "$1")"; }
h2_bad() { awk '/^requests:/ { print $10 + $12 + $14 + 0 }' "$1"; }
h2_ok() { awk '/^requests:/ { print $8 }' "$1"; }

run_h2load() { # NAME OUT ARGS...
    local name="$1" out="$2"
    shift 2
    local hits0 bad hits
    hits0="$(metric "$HITS" "$URL")"
    quiet_guarded to_file "$out" h2load -t "$THREADS" -c "$CONNS" -m "$STREAMS" -D "$DURATION" "$@"
    bad="$(h2_bad "$out")"
    [ "$bad" = 0 ] || { echo "$name: $bad failed or errored requests" >&2; cat "$out" >&2; exit 1; }
    # gRPC errors travel in trailers, which h2load does not read: every
    # answered request must have been a memory hit. (A guarded rerun only
    # adds hits, so this holds for the run that counts.)
    hits=$(($(metric "$HITS" "$URL") - hits0))
    [ "$hits" -ge "$(h2_ok "$out")" ] || {
        echo "$name: $(h2_ok "$out") answers but only $hits cache hits" >&2
        exit 1
    }
    printf '  %-34s %10s req/s   mean %7s ms %s\n' "$name" "$(h2_rps "$out")" "$(h2_mean "$out")" "$GUARD_NOTE"
}
HITS='infercache_cache_hits_total{tier="memory"}'
GRPC=(-d "$TMP/grpc.bin" -H 'content-type: application/grpc' -H 'te: trailers'
    "$URL/inference.GRPCInferenceService/ModelInfer")
REST=(-d "$TMP/rest.bin" -H 'content-type: application/octet-stream'
    -H "inference-header-content-length: $header_len" "$URL/v2/models/mlp/infer")

h2load -t "$THREADS" -c "$CONNS" -D 2 "${GRPC[@]}" >/dev/null
h2load -t "$THREADS" -c "$CONNS" -D 2 "${REST[@]}" >/dev/null
m0="$(metric infercache_cache_misses_total "$URL")"
run_grpc() { run_h2load "grpc hit (1 row, raw)" "$1" "${GRPC[@]}"; }
run_rest() { run_h2load "binary REST hit (1 row, h2c)" "$1" "${REST[@]}"; }
grpc_vs_rest run_grpc run_rest h2_rps
misses=$(($(metric infercache_cache_misses_total "$URL") - m0))
[ "$misses" = 0 ] || { echo "requests missed the cache $misses times" >&2; exit 1; }
grpc_vs_rest_summary hit req/s "no misses during the runs"
