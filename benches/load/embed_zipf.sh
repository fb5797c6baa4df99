#!/usr/bin/env bash
# A Zipf workload on /v1/embeddings: caching on vs caching off.
#
# REQUESTS requests (10,000) of one text each, drawn from DISTINCT (2,000)
# distinct synthetic sentences (embed_texts.py, seed 3) with P(rank k) ∝
# 1/k^S (S = 1.1), a fixed seed so both runs send the same sequence, at
# CONCURRENCY (32) keep-alive connections (`embed load --zipf`, benches/embed.rs).
#
#   cached:   a fresh server (empty cache), default headers
#   uncached: a fresh server, every request `Cache-Control: no-cache, no-store`
#             (nothing read or stored; concurrent identical texts still share
#             one computation, which only helps the baseline)
#
# Reports wall time, texts/s, the speed-up (uncached time / cached time) and
# the hit rate from X-Cache and from /metrics. Rounds alternate the order;
# every run waits for a quiet machine.
#
# Environment: ROUNDS (2), REQUESTS (10000), DISTINCT (2000), S (1.1),
# SEED (42), CONCURRENCY (32), MAX_DELAY_MS (2), ORT_THREADS (2),
# INSTANCES (1), PORT (17814), SKIP_BUILD=1.
source "$(dirname "$0")/infer_lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-2}"
REQUESTS="${REQUESTS:-10000}"
DISTINCT="${DISTINCT:-2000}"
S="${S:-1.1}"
SEED="${SEED:-42}"
CONCURRENCY="${CONCURRENCY:-32}"
MAX_DELAY_MS="${MAX_DELAY_MS:-2}"
ORT_THREADS="${ORT_THREADS:-2}"
INSTANCES="${INSTANCES:-1}"
PORT="${PORT:-17814}"
HERE="$(cd "$(dirname "$0")" && pwd)"
MODEL_DIR="$ROOT/assets/models/minilm"

need curl python3
[ -f "$MODEL_DIR/model.onnx" ] || { echo "run scripts/setup first (no $MODEL_DIR)" >&2; exit 1; }
build_server
EMBED="$(bench_bin embed)"
TMP="$(new_tmpdir)"
python3 "$HERE/embed_texts.py" "$DISTINCT" "$TMP/texts.txt" --seed 3
minilm_config "$TMP/config.toml" "$MAX_DELAY_MS" "$ORT_THREADS" "$INSTANCES"

measure() { # OUT_PREFIX [--no-cache]
    local dir="$1.d" url="http://127.0.0.1:$PORT"
    rm -rf "$dir"
    mkdir -p "$dir"
    start_infercache "$PORT" "$dir" --config "$TMP/config.toml"
    "$EMBED" load --url "$url" --texts "$TMP/texts.txt" --concurrency "$CONCURRENCY" \
        --zipf "$S" --distinct "$DISTINCT" --requests "$REQUESTS" --seed "$SEED" \
        --secs-cap 900 ${2:-} >"$1.txt"
    {
        echo "hits $(metric 'infercache_cache_hits_total{tier="memory"}' "$url") $(metric 'infercache_cache_hits_total{tier="disk"}' "$url")"
        echo "misses $(metric infercache_cache_misses_total "$url")"
        echo "coalesced $(metric infercache_coalesced_total "$url")"
        echo "rows $(metric 'infercache_model_rows_total{model="minilm"}' "$url")"
        echo "runs $(metric 'infercache_model_runs_total{model="minilm"}' "$url")"
    } >"$1.metrics"
    kill "$IC_PID"
    wait "$IC_PID" 2>/dev/null || true
}

CACHED=() UNCACHED=() HITRATE=()
run() { # ROUND cached|uncached
    local out="$TMP/$2-$1" flag=""
    [ "$2" = uncached ] && flag="--no-cache"
    quiet_guarded measure "$out" $flag
    local errors requests secs
    errors="$(field errors "$out.txt")" requests="$(field requests "$out.txt")"
    [ "$errors" = 0 ] && [ "$requests" = "$REQUESTS" ] ||
        { echo "$2: $errors errors, $requests of $REQUESTS answered" >&2; cat "$out.txt" >&2; exit 1; }
    secs="$(field secs "$out.txt")"
    if [ "$2" = cached ]; then CACHED+=("$secs"); HITRATE+=("$(field hit_rate "$out.txt")"); else UNCACHED+=("$secs"); fi
    printf '  %-9s %7ss  %8s texts/s  X-Cache hit %5s coalesced %4s miss %5s  p50 %7s ms  p99 %7s ms  model rows %s in %s runs  /metrics %s %s\n' \
        "$2" "$secs" "$(field texts_per_s "$out.txt")" "$(field hit "$out.txt")" "$(field coalesced "$out.txt")" \
        "$(field miss "$out.txt")" "$(field p50_ms "$out.txt")" "$(field p99_ms "$out.txt")" \
        "$(awk '$1 == "rows" { print $2 }' "$out.metrics")" "$(awk '$1 == "runs" { print $2 }' "$out.metrics")" \
        "$(awk '$1 == "hits" { h = "hits_total memory " $2 " disk " $3 } $1 == "misses" { m = "misses_total " $2 } $1 == "coalesced" { c = "coalesced_total " $2 } END { print h ", " m ", " c }' "$out.metrics")" \
        "$GUARD_NOTE"
}

echo "# embed_zipf: $(nproc) cores, $REQUESTS requests over $DISTINCT distinct texts, zipf s=$S seed $SEED," \
    "$CONCURRENCY clients, max_delay_ms $MAX_DELAY_MS, threads $ORT_THREADS, instances $INSTANCES"
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    if [ $((round % 2)) = 1 ]; then order="uncached cached"; else order="cached uncached"; fi
    for who in $order; do run "$round" "$who"; done
    echo "  speed-up  $(ratio "${UNCACHED[-1]}" "${CACHED[-1]}")"
done
c="$(mean "${CACHED[@]}")" u="$(mean "${UNCACHED[@]}")"
echo "summary (mean of $ROUNDS rounds)"
echo "  cached    $c s  ($(div "$REQUESTS" "$c") texts/s), hit rate (X-Cache: hit) ${HITRATE[*]}"
echo "  uncached  $u s  ($(div "$REQUESTS" "$u") texts/s)"
echo "  speed-up  $(ratio "$u" "$c")"
