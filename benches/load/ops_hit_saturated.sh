#!/usr/bin/env bash
# Hit path (KV GET of a cached 100-byte value, 32 connections) alone, and
# while a second wrk floods /v1/embeddings with distinct texts (128
# connections) so the model's queue stays full and the excess gets 429.
# Rounds alternate the order (alone first, then saturated first, ...); the
# flood runs only around the saturated measurements.
# Target: hits keep >= 0.8 of their requests/s (issue: operations).
#
# Environment: ROUNDS (2), DURATION (10s), THREADS and NICE (the model's
# `threads` and `nice`; unset: the server's defaults), SKIP_BUILD=1,
# INFERCACHE_BIN_DIR (pinned binaries). Both ways of the priority setting:
#   NICE=0 benches/load/ops_hit_saturated.sh; NICE=10 benches/load/ops_hit_saturated.sh
# Usage: benches/load/ops_hit_saturated.sh   (needs scripts/setup's model)
source "$(dirname "$0")/lib.sh"
need wrk curl
trap cleanup EXIT
build_release
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10s}"
dir="$(new_tmpdir)"
port=17690
# A short queue makes the flood overflow into 429s.
{
    cat <<TOML
[[model]]
name = "minilm"
path = "$ROOT/assets/models/minilm/model.onnx"
tokenizer = "$ROOT/assets/models/minilm/tokenizer.json"
max_batch = 32
queue = 64
max_inputs = 64
TOML
    [ -z "${THREADS:-}" ] || echo "threads = $THREADS"
    [ -z "${NICE:-}" ] || echo "nice = $NICE"
} >"$dir/minilm.toml"
start_infercache "$port" "$dir" --config "$dir/minilm.toml"
base="http://127.0.0.1:$port"
head -c 100 /dev/zero | tr '\0' 'x' | curl -sf -X PUT --data-binary @- "$base/v1/kv/hot"
curl -sf "$base/v1/kv/hot" >/dev/null

hits() { # OUT
    wrk -t1 -c32 -d"$DURATION" --latency "$base/v1/kv/hot" >"$1"
}

saturated() { # OUT
    wrk -t1 -c128 -d"$((${DURATION%s} + 4))s" -s "$ROOT/benches/load/ops_flood.lua" "$base" \
        >"$1.flood" &
    local flood=$!
    PIDS+=("$flood")
    sleep 2
    hits "$1"
    wait "$flood"
    stop_pid "$flood"
}

echo "# ops_hit_saturated: $(nproc) cores, model settings: threads ${THREADS:-default}," \
    "nice ${NICE:-default}; hits wrk -t1 -c32 -d$DURATION; flood wrk -t1 -c128"
printf '%-8s %-12s %12s %10s %10s  %s\n' round run "requests/s" "p50 ms" "p99 ms" flood
ALONE=() SAT=() RATIOS=()
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="alone saturated"; else order="saturated alone"; fi
    for run in $order; do
        out="$dir/$run-$round.txt"
        if [ "$run" = alone ]; then hits "$out"; else saturated "$out"; fi
        note=""
        if [ "$run" = saturated ]; then
            SAT+=("$(wrk_rps "$out")")
            note="$(wrk_rps "$out.flood") requests/s answered, $(awk '/Non-2xx/ { print $NF }' "$out.flood") of them 429"
        else
            ALONE+=("$(wrk_rps "$out")")
        fi
        printf '%-8s %-12s %12s %10s %10s  %s\n' "$round" "hits $run" "$(wrk_rps "$out")" \
            "$(wrk_p50 "$out")" "$(wrk_p99 "$out")" "$note"
    done
    RATIOS+=("$(ratio "${SAT[-1]}" "${ALONE[-1]}")")
    echo "  ratio saturated/alone, round $round: ${RATIOS[-1]}"
done
rows="$(curl -sf "$base/metrics" | awk '/^infercache_model_rows_total/ { print $2 }')"
echo "rows computed: $rows"
echo "ratio saturated/alone, mean of $ROUNDS rounds: $(ratio "$(mean "${SAT[@]}")" "$(mean "${ALONE[@]}")")," \
    "median of the rounds' ratios: $(printf '%s\n' "${RATIOS[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }') (target >= 0.8)"
