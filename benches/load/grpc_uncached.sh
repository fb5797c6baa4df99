#!/usr/bin/env bash
# Uncached infer throughput on the heavier benchmark model over gRPC vs
# binary REST, same server, same client, same concurrency.
#
# Starts infercache with the minilm text model (all-MiniLM-L6-v2, int8,
# from assets/; the settings of examples/minilm.toml) and drives its KServe
# v2 infer endpoint with examples/kserve_load (benches/load/kserve_load.rs):
# ROWS new rows of TOKENS token ids per request (input_ids, attention_mask,
# token_type_ids, INT64), so every row is a miss and a model row; output
# last_hidden_state [ROWS, TOKENS, 384] FP32 as raw bytes. Both protocols
# over the same HTTP/2 client (tonic's channel, prior knowledge), CONNS
# connections and CONCURRENCY requests in flight:
#   grpc: inference.GRPCInferenceService/ModelInfer, raw_input_contents
#   rest: POST /v2/models/minilm/infer, Triton's binary tensor extension
# in alternating order, ROUNDS times. Prints rows/s, mean and p99 latency,
# the mean batch size and grpc / rest per round. Fails if any answer was
# not a miss or /metrics disagrees on the number of rows computed.
#
# Environment: ROUNDS (2), DURATION (10, seconds), CONNS (8), CONCURRENCY
# (64), TOKENS (32), ROWS (1), CLIENT_THREADS (1), PORT (17814),
# SKIP_BUILD=1, and infer_lib.sh's QUIET / ATTEMPTS / QUIET_MAX_WAIT.
source "$(dirname "$0")/infer_lib.sh"
source "$(dirname "$0")/grpc_lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-8}"
CONCURRENCY="${CONCURRENCY:-64}"
TOKENS="${TOKENS:-32}"
ROWS="${ROWS:-1}"
CLIENT_THREADS="${CLIENT_THREADS:-1}"
PORT="${PORT:-17814}"
MINILM="$ROOT/assets/models/minilm"

need curl
[ -f "$MINILM/model.onnx" ] || { echo "no $MINILM/model.onnx (scripts/setup fetches it)" >&2; exit 1; }
build_server
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release --example kserve_load >&2)
fi
LOAD="$RELEASE/examples/kserve_load"
TMP="$(new_tmpdir)"
URL="http://127.0.0.1:$PORT"
cat >"$TMP/config.toml" <<EOF
[[model]]
name = "minilm"
path = "$MINILM/model.onnx"
tokenizer = "$MINILM/tokenizer.json"
max_tokens = 256
max_batch = 32
max_batch_tokens = 8192
max_delay_ms = 2
threads = 2
EOF
start_infercache "$PORT" "$TMP" --config "$TMP/config.toml"
echo "# grpc_uncached: $(nproc) cores, minilm, $ROWS row(s) x $TOKENS tokens per request, kserve_load -c$CONNS -n$CONCURRENCY -t$CLIENT_THREADS ${DURATION}s (h2c)"

ROWS_METRIC='infercache_model_rows_total{model="minilm"}'
RUNS_METRIC='infercache_model_runs_total{model="minilm"}'
RUN=0
# measure PROTOCOL SECS OUT: one load run on rows no run has used.
measure() {
    RUN=$((RUN + 1))
    local r0 b0 m0
    r0="$(metric "$ROWS_METRIC" "$URL")" b0="$(metric "$RUNS_METRIC" "$URL")"
    m0="$(metric infercache_cache_misses_total "$URL")"
    "$LOAD" --url "$URL" --protocol "$1" --secs "$2" --conns "$CONNS" \
        --concurrency "$CONCURRENCY" --tokens "$TOKENS" --rows "$ROWS" \
        --threads "$CLIENT_THREADS" --start $((RUN << 40)) >"$3"
    {
        echo "rows $(($(metric "$ROWS_METRIC" "$URL") - r0))"
        echo "runs $(($(metric "$RUNS_METRIC" "$URL") - b0))"
        echo "misses $(($(metric infercache_cache_misses_total "$URL") - m0))"
    } >"$3.metrics"
}

run_load() { # PROTOCOL NAME OUT
    quiet_guarded measure "$1" "$DURATION" "$3"
    local requests rows misses runs
    requests="$(field requests "$3")"
    rows="$(awk '$1 == "rows" { print $2 }' "$3.metrics")"
    runs="$(awk '$1 == "runs" { print $2 }' "$3.metrics")"
    misses="$(awk '$1 == "misses" { print $2 }' "$3.metrics")"
    [ "$rows" = $((requests * ROWS)) ] && [ "$misses" = "$rows" ] || {
        echo "$2: $requests requests of $ROWS row(s) but $rows model rows, $misses misses" >&2
        exit 1
    }
    printf '  %-30s %9s rows/s  mean %7s ms  p99 %7s ms  mean batch %5s  (%s rows) %s\n' \
        "$2" "$(field rows_per_s "$3")" "$(field mean_ms "$3")" "$(field p99_ms "$3")" \
        "$(div "$rows" "$runs")" "$rows" "$GUARD_NOTE"
}

measure grpc 2 "$TMP/warm-grpc.txt"
measure rest 2 "$TMP/warm-rest.txt"
run_grpc() { run_load grpc "grpc (raw_input_contents)" "$1"; }
run_rest() { run_load rest "binary REST (h2c)" "$1"; }
rows_per_s() { field rows_per_s "$1"; }
grpc_vs_rest run_grpc run_rest rows_per_s
grpc_vs_rest_summary uncached rows/s "every row a miss and a model row"
