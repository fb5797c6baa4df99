#!/usr/bin/env bash
# Uncached inference throughput over HTTP vs a direct in-process ort loop.
#
# Server: infercache with fixtures/models/$MODEL.onnx (mlp: x FP32 [N,16] ->
# y FP32 [N,4], 0.14 us per row; heavy: the same shapes, ~0.5 ms per row, so
# the model's run dominates) under a TOML config per variant. Load: wrk, CONNS connections,
# infer_unique.lua (every request ROWS new random rows, JSON; default 1),
# so every row is a miss; checked afterwards from /metrics (misses ~ rows,
# no hits). rows/s = req/s x ROWS.
#
# Baseline: benches/infer.rs, Backend::run on batches of MAX_BATCH rows back
# to back, with the variant's `threads` (intra-op) and `instances` (one
# loop thread per instance), same duration.
#
# Each round runs every variant and each distinct baseline once, in
# alternating order; every run waits for a quiet machine (infer_lib.sh).
#
# Environment: MODEL (mlp; or heavy), ROUNDS (2), DURATION (10s), CONNS (64),
# THREADS (wrk, 2), ROWS (1), MAX_BATCH (32), PORT (17811), SKIP_BUILD=1,
# BASE_THREADS (the baseline's intra-op threads when a variant sets none:
# 1), VARIANTS: `;`-separated
# variants, each a `,`-separated list of model keys (max_delay_ms, threads,
# instances, max_batch, queue) and `cc=VALUE` (a Cache-Control header on
# every request; `+` stands for ", "), e.g.
#   VARIANTS='max_delay_ms=2;max_delay_ms=0;cc=no-store;cc=no-cache+no-store' benches/load/infer_mlp.sh
#
# With `cc=no-store` the misses are not stored (no memory insert, no disk
# write); with `cc=no-cache+no-store` the tiers are not read either (no
# memory lookup, no disk lookup): what is left is HTTP, JSON, keys,
# coalescing and the batcher.
source "$(dirname "$0")/infer_lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
MAX_BATCH="${MAX_BATCH:-32}"
ROWS="${ROWS:-1}"
MODEL="${MODEL:-mlp}"
BASE_THREADS="${BASE_THREADS:-1}"
export ROWS MODEL
PORT="${PORT:-17811}"
VARIANTS="${VARIANTS:-max_delay_ms=2,threads=1,instances=1}"
LUA="$(cd "$(dirname "$0")" && pwd)/infer_unique.lua"
SECS="${DURATION%s}"

need wrk curl
build_server
INFER="$(bench_bin infer)"
TMP="$(new_tmpdir)"
IFS=';' read -r -a VARIANT_LIST <<<"$VARIANTS"

# variant_get VARIANT KEY DEFAULT
variant_get() {
    local kv
    IFS=',' read -r -a kvs <<<"$1"
    for kv in "${kvs[@]}"; do
        [ "${kv%%=*}" = "$2" ] && { echo "${kv#*=}"; return; }
    done
    echo "$3"
}

write_config() { # VARIANT OUT
    local kv
    {
        echo '[[model]]'
        echo "name = \"$MODEL\""
        echo "path = \"$ROOT/fixtures/models/$MODEL.onnx\""
        echo "max_batch = $(variant_get "$1" max_batch "$MAX_BATCH")"
        IFS=',' read -r -a kvs <<<"$1"
        for kv in "${kvs[@]}"; do
            case "${kv%%=*}" in
                cc | max_batch | "") ;;
                *) echo "${kv%%=*} = ${kv#*=}" ;;
            esac
        done
    } >"$2"
}

measure_server() { # VARIANT OUT_PREFIX
    local dir="$2.d" url="http://127.0.0.1:$PORT"
    rm -rf "$dir"
    mkdir -p "$dir"
    write_config "$1" "$dir/config.toml"
    start_infercache "$PORT" "$dir" --config "$dir/config.toml"
    local cc
    cc="$(variant_get "$1" cc "" | sed 's/+/, /g')"
    CACHE_CONTROL="$cc" wrk -t "$THREADS" -c "$CONNS" -d 2s -s "$LUA" "$url" >/dev/null
    local m0 r0 b0 n0
    m0="$(metric infercache_cache_misses_total "$url")"
    r0="$(metric "infercache_model_rows_total{model=\"$MODEL\"}" "$url")"
    b0="$(metric "infercache_model_runs_total{model=\"$MODEL\"}" "$url")"
    n0="$(metric "infercache_model_run_seconds_sum{model=\"$MODEL\"}" "$url")"
    CACHE_CONTROL="$cc" wrk -t "$THREADS" -c "$CONNS" -d "$DURATION" \
        --latency -s "$LUA" "$url" >"$2.txt"
    {
        echo "misses $(($(metric infercache_cache_misses_total "$url") - m0))"
        echo "hits $(metric 'infercache_cache_hits_total{tier="memory"}' "$url")"
        echo "rows $(($(metric "infercache_model_rows_total{model=\"$MODEL\"}" "$url") - r0))"
        echo "runs $(($(metric "infercache_model_runs_total{model=\"$MODEL\"}" "$url") - b0))"
        echo "run_seconds $(awk -v a="$(metric "infercache_model_run_seconds_sum{model=\"$MODEL\"}" "$url")" -v b="$n0" 'BEGIN { print a - b }')"
        # Results answered but never written to disk (the writer's queue
        # was full; warm-up included).
        echo "unwritten $(metric infercache_writes_dropped_total "$url")"
    } >"$2.metrics"
    awk '/^VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$IC_PID/status" >"$2.rss"
    kill "$IC_PID"
    wait "$IC_PID" 2>/dev/null || true
}

run_server() { # ROUND INDEX
    local v="${VARIANT_LIST[$2]}" out="$TMP/srv-$1-$2"
    quiet_guarded measure_server "$v" "$out"
    local bad requests misses hits rows runs rps unwritten
    bad="$(wrk_bad "$out.txt")"
    [ "$bad" = 0 ] || { echo "$v: $bad errors / non-2xx" >&2; cat "$out.txt" >&2; exit 1; }
    requests="$(wrk_requests "$out.txt")"
    misses="$(awk '$1 == "misses" { print $2 }' "$out.metrics")"
    hits="$(awk '$1 == "hits" { print $2 }' "$out.metrics")"
    rows="$(awk '$1 == "rows" { print $2 }' "$out.metrics")"
    runs="$(awk '$1 == "runs" { print $2 }' "$out.metrics")"
    unwritten="$(awk '$1 == "unwritten" { print $2 }' "$out.metrics")"
    rps="$(awk -v r="$(wrk_rps "$out.txt")" -v n="$ROWS" 'BEGIN { printf "%.2f", r * n }')"
    eval "SRV_$2+=(\"$rps\")"
    printf '  %-44s %9s rows/s  p50 %6s ms  p99 %6s ms  mean batch %5s  %s us/run  (%s req, %s misses, %s hits, %s not written to disk, RSS %s MiB) %s\n' \
        "server [$v]" "$rps" "$(wrk_p50 "$out.txt")" "$(wrk_p99 "$out.txt")" \
        "$(div "$rows" "$runs")" \
        "$(div "$(awk '$1 == "run_seconds" { print $2 * 1e6 }' "$out.metrics")" "$runs")" \
        "$requests" "$misses" "$hits" "$unwritten" "$(cat "$out.rss")" "$GUARD_NOTE"
}

measure_baseline() { # THREADS INSTANCES OUT
    "$INFER" --model "$ROOT/fixtures/models/$MODEL.onnx" --batch "$MAX_BATCH" --threads "$1" \
        --instances "$2" --secs "$SECS" >"$3"
}

declare -A BASE
run_baseline() { # ROUND THREADS INSTANCES
    local out="$TMP/base-$1-$2-$3"
    quiet_guarded measure_baseline "$2" "$3" "$out"
    local rps
    rps="$(field rows_per_s "$out")"
    BASE["$1,$2,$3"]="$rps"
    printf '  %-44s %9s rows/s  (%s us per run of %s rows) %s\n' \
        "in-process Backend::run threads=$2 instances=$3" "$rps" "$(field us_per_run "$out")" \
        "$MAX_BATCH" "$GUARD_NOTE"
}

pairs() {
    local v
    for v in "${VARIANT_LIST[@]}"; do
        echo "$(variant_get "$v" threads "$BASE_THREADS") $(variant_get "$v" instances 1)"
    done | sort -u
}

echo "# infer_mlp: model $MODEL, $(nproc) cores, wrk -t$THREADS -c$CONNS -d$DURATION, $ROWS new random row(s) per request, max_batch $MAX_BATCH"
for i in "${!VARIANT_LIST[@]}"; do eval "SRV_$i=()"; done
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    if [ $((round % 2)) = 1 ]; then
        while read -r t n; do run_baseline "$round" "$t" "$n"; done < <(pairs)
    fi
    for i in "${!VARIANT_LIST[@]}"; do run_server "$round" "$i"; done
    if [ $((round % 2)) = 0 ]; then
        while read -r t n; do run_baseline "$round" "$t" "$n"; done < <(pairs)
    fi
done

echo "summary (mean of $ROUNDS rounds; ratio = server rows/s / in-process rows/s, per round in brackets)"
for i in "${!VARIANT_LIST[@]}"; do
    v="${VARIANT_LIST[$i]}"
    t="$(variant_get "$v" threads "$BASE_THREADS")" n="$(variant_get "$v" instances 1)"
    eval "values=(\"\${SRV_$i[@]}\")"
    bases=() per_round=""
    for r in $(seq "$ROUNDS"); do
        bases+=("${BASE[$r,$t,$n]}")
        per_round+=" $(ratio "${values[$((r - 1))]}" "${BASE[$r,$t,$n]}")"
    done
    srv="$(mean "${values[@]}")" base="$(mean "${bases[@]}")"
    printf '  %-44s server %9s rows/s  in-process %10s rows/s  ratio %s  [%s ]\n' \
        "[$v]" "$srv" "$base" "$(ratio "$srv" "$base")" "$per_round"
done
echo "  (target: ratio >= 0.8)"
