#!/usr/bin/env bash
# A fleet of three servers on one Redis computes each distinct text once
# (issue #12), on the Zipf embeddings workload of embed_zipf.sh.
#
# REQUESTS (3,000) one-text /v1/embeddings requests drawn from DISTINCT
# (1,000) synthetic sentences (embed_texts.py, seed 3) with P(rank k) ∝
# 1/k^S (S = 1.1; the xorshift sequence of `embed load --zipf`, seed SEED),
# sent round robin to three servers (fleet_load.py, CONCURRENCY threads).
#
#   shared:  three fresh servers (empty data dirs) with `--shared-url` on
#            one fresh redis-server (`--save "" --appendonly no`)
#   alone:   three fresh servers without a shared tier (today's fleet:
#            each computes what it has not seen itself)
#
# After each run it reads `infercache_model_rows_total{model="minilm"}`
# (rows the model computed) and the runs, hits by tier, misses and
# coalesced counts from every server's /metrics, and compares the summed
# rows with the number of distinct texts sent. With the shared tier the sum
# must equal that number (a rare duplicate computation, which the issue
# allows, makes the script say so, not fail).
#
# Environment: ROUNDS (1), REQUESTS (3000), DISTINCT (1000), S (1.1), SEED
# (42), CONCURRENCY (24), MAX_DELAY_MS (2), ORT_THREADS (1 per server),
# MODES ("shared alone"), REDIS_PORT (17840), PORTS ("17841 17842 17843"),
# SKIP_BUILD=1, INFERCACHE_BIN_DIR (pinned binary), QUIET=0 (measure on a
# busy machine; see infer_lib.sh).
source "$(dirname "$0")/infer_lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-1}"
REQUESTS="${REQUESTS:-3000}"
DISTINCT="${DISTINCT:-1000}"
S="${S:-1.1}"
SEED="${SEED:-42}"
CONCURRENCY="${CONCURRENCY:-24}"
MAX_DELAY_MS="${MAX_DELAY_MS:-2}"
ORT_THREADS="${ORT_THREADS:-1}"
MODES="${MODES:-shared alone}"
REDIS_PORT="${REDIS_PORT:-17840}"
read -r -a PORT_LIST <<<"${PORTS:-17841 17842 17843}"
HERE="$(cd "$(dirname "$0")" && pwd)"
MODEL_DIR="$ROOT/assets/models/minilm"

need curl python3 redis-server redis-cli
[ -f "$MODEL_DIR/model.onnx" ] || { echo "run scripts/setup first (no $MODEL_DIR)" >&2; exit 1; }
build_server
TMP="$(new_tmpdir)"
python3 "$HERE/embed_texts.py" "$DISTINCT" "$TMP/texts.txt" --seed 3
minilm_config "$TMP/config.toml" "$MAX_DELAY_MS" "$ORT_THREADS"
ports_csv="$(IFS=,; echo "${PORT_LIST[*]}")"

SERVER_PIDS=()
measure() { # OUT_PREFIX shared|alone
    local dir="$1.d" i port flags=() redis_pid=""
    rm -rf "$dir"
    mkdir -p "$dir/redis"
    if [ "$2" = shared ]; then
        start_redis "$REDIS_PORT" "$dir/redis"
        redis_pid=$REDIS_PID
        flags=(--shared-url "redis://127.0.0.1:$REDIS_PORT")
    fi
    SERVER_PIDS=()
    for i in "${!PORT_LIST[@]}"; do
        mkdir -p "$dir/s$i"
        start_infercache "${PORT_LIST[$i]}" "$dir/s$i" --config "$TMP/config.toml" "${flags[@]}"
        SERVER_PIDS+=("$IC_PID")
    done
    python3 "$HERE/fleet_load.py" --ports "$ports_csv" --texts "$TMP/texts.txt" \
        --requests "$REQUESTS" --distinct "$DISTINCT" --zipf "$S" --seed "$SEED" \
        --concurrency "$CONCURRENCY" >"$1.txt"
    : >"$1.metrics"
    for i in "${!PORT_LIST[@]}"; do
        port="${PORT_LIST[$i]}"
        curl -sS "http://127.0.0.1:$port/metrics" | awk -v s="$i" '
            $1 == "infercache_model_rows_total{model=\"minilm\"}" { v["rows"] = $2 }
            $1 == "infercache_model_runs_total{model=\"minilm\"}" { v["runs"] = $2 }
            $1 == "infercache_cache_hits_total{tier=\"memory\"}" { v["memory"] = $2 }
            $1 == "infercache_cache_hits_total{tier=\"disk\"}" { v["disk"] = $2 }
            $1 == "infercache_cache_hits_total{tier=\"shared\"}" { v["shared"] = $2 }
            $1 == "infercache_cache_misses_total" { v["misses"] = $2 }
            $1 == "infercache_coalesced_total" { v["coalesced"] = $2 }
            $1 == "infercache_shared_ops_total{op=\"lease\",result=\"taken\"}" { v["lease_taken"] = $2 }
            $1 == "infercache_shared_ops_total{op=\"lease\",result=\"waited\"}" { v["lease_waited"] = $2 }
            END {
                printf "server %s", s
                n = split("rows runs memory disk shared misses coalesced lease_taken lease_waited", k, " ")
                for (j = 1; j <= n; j++) printf " %s=%d", k[j], v[k[j]] + 0
                printf "\n"
            }' >>"$1.metrics"
    done
    for i in "${!SERVER_PIDS[@]}"; do stop_pid "${SERVER_PIDS[$i]}"; done
    if [ -n "$redis_pid" ]; then stop_pid "$redis_pid"; fi
}

# sum KEY FILE: the sum of KEY=N over the servers' lines.
sum() { awk -v k="$1" '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) n += kv[2] } } END { print n + 0 }' "$2"; }

FAILED=0
run() { # ROUND MODE
    local out="$TMP/$2-$1"
    quiet_guarded measure "$out" "$2"
    local errors requests distinct rows
    errors="$(field errors "$out.txt")" requests="$(field requests "$out.txt")"
    if [ "$errors" != 0 ] || [ "$requests" != "$REQUESTS" ]; then
        echo "$2: $errors errors of $requests requests" >&2
        cat "$out.txt" >&2
        exit 1
    fi
    distinct="$(field distinct "$out.txt")" rows="$(sum rows "$out.metrics")"
    printf '  %-6s %6ss  X-Cache hit %s coalesced %s miss %s  model rows %s (%s) in %s runs  distinct texts %s  rows/distinct %s %s\n' \
        "$2" "$(field secs "$out.txt")" "$(field hit "$out.txt")" "$(field coalesced "$out.txt")" \
        "$(field miss "$out.txt")" "$rows" "$(awk '{ split($3, kv, "="); printf "%s%s", sep, kv[2]; sep = " + " }' "$out.metrics")" \
        "$(sum runs "$out.metrics")" "$distinct" "$(div "$rows" "$distinct" %.3f)" "$GUARD_NOTE"
    sed 's/^/           /' "$out.metrics"
    if [ "$2" = shared ] && [ "$rows" != "$distinct" ]; then
        echo "  shared: $rows rows computed for $distinct distinct texts (a duplicate computation the lease did not prevent)"
        FAILED=1
    fi
}

echo "# fleet_zipf: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), ${#PORT_LIST[@]} servers," \
    "$REQUESTS requests over $DISTINCT texts, zipf s=$S seed $SEED, round robin, $CONCURRENCY client threads," \
    "max_delay_ms $MAX_DELAY_MS, threads $ORT_THREADS per server"
read -r -a MODE_LIST <<<"$MODES"
for round in $(seq "$ROUNDS"); do
    echo "round $round (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    order=("${MODE_LIST[@]}")
    if [ $((round % 2)) = 0 ]; then
        order=()
        for ((i = ${#MODE_LIST[@]} - 1; i >= 0; i--)); do order+=("${MODE_LIST[$i]}"); done
    fi
    for mode in "${order[@]}"; do run "$round" "$mode"; done
done
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$FAILED" = 0 ] || echo "summary: the shared fleet computed some text more than once (see above)"
