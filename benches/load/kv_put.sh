#!/usr/bin/env bash
# Durable PUT throughput: infercache vs Redis with appendfsync always.
#
# infercache: `PUT /v1/kv/{key}` answers 204 only after the group-commit
# writer's redb transaction is durable. wrk drives 64 connections with
# put.lua (100-byte values, a new key per request).
#
# Redis: `redis-server --appendonly yes --appendfsync always` fsyncs the AOF
# before it answers (it too groups every command of one event-loop pass
# into one fsync). redis-benchmark drives 64 clients with `SET` of 100-byte
# values over a 10^9 keyspace (-r), no pipelining. Its request count is
# calibrated so the run lasts about as long as a wrk run.
#
# Each infercache configuration in CONFIGS gets a fresh server and data dir
# per run. Runs alternate order (Redis first in odd rounds, last in even
# rounds). Prints ops/s, p50/p99 and the ratio infercache / Redis per
# configuration.
#
# Target: ratio >= 1.0 for the default configuration.
#
# Environment: ROUNDS (2), DURATION (10s, wrk; Redis is calibrated to it),
# CONNS (64), THREADS (2), IC_PORT (17602), REDIS_PORT (17702),
# SKIP_BUILD=1, CONFIGS (`;`-separated flag sets; an empty set is the
# default configuration), e.g.
#   CONFIGS=';--write-delay 1ms;--write-batch 64' benches/load/kv_put.sh
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
IC_PORT="${IC_PORT:-17602}"
REDIS_PORT="${REDIS_PORT:-17702}"
CONFIGS="${CONFIGS:-;--write-delay 1ms}"
LUA="$(cd "$(dirname "$0")" && pwd)/put.lua"

need wrk curl redis-server redis-benchmark redis-cli
build_release
TMP="$(new_tmpdir)"
secs="${DURATION%s}"

IFS=';' read -r -a CONFIG_LIST <<<"$CONFIGS"
[ "${#CONFIG_LIST[@]}" -gt 0 ] || CONFIG_LIST=("")
label() { if [ -n "$1" ]; then echo "$1"; else echo "(defaults)"; fi; }

# --- Redis -------------------------------------------------------------
REDIS_N=0
run_redis() { # ROUND
    local dir="$TMP/redis-$1"
    mkdir -p "$dir"
    port_free "$REDIS_PORT" || { echo "port $REDIS_PORT is busy" >&2; exit 1; }
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
        --appendonly yes --appendfsync always --dir "$dir" --save '' \
        --daemonize no --logfile "$dir/redis.log" &
    local pid=$!
    PIDS+=("$pid")
    wait_for_port "$REDIS_PORT" "$pid"
    if [ "$REDIS_N" = 0 ]; then
        # Calibrate: a short run, then enough requests for ~DURATION.
        local rps
        rps="$(redis-benchmark -p "$REDIS_PORT" -t set -d 100 -c "$CONNS" -r 1000000000 \
            -n 20000 --csv | awk -F'"' '$2 == "SET" { print $4 }')"
        REDIS_N="$(awk -v r="$rps" -v s="$secs" 'BEGIN { printf "%d", r * s }')"
        redis-cli -p "$REDIS_PORT" flushall >/dev/null
    fi
    local out="$TMP/redis-$1.csv" start end
    start="$(date +%s.%N)"
    redis-benchmark -p "$REDIS_PORT" -t set -d 100 -c "$CONNS" -r 1000000000 \
        -n "$REDIS_N" --csv >"$out"
    end="$(date +%s.%N)"
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    REDIS_RPS+=("$(awk -F'"' '$2 == "SET" { print $4 }' "$out")")
    local p50 p99 aof
    p50="$(awk -F'"' '$2 == "SET" { print $10 }' "$out")"
    p99="$(awk -F'"' '$2 == "SET" { print $14 }' "$out")"
    aof="$(redis-cli -p "$REDIS_PORT" info persistence | awk -F: '/^aof_current_size/ { print $2 }' | tr -d '\r')"
    printf '  %-28s %10s ops/s  p50 %7s ms  p99 %7s ms  (%d SETs in %.1fs, AOF %s bytes)\n' \
        "redis appendfsync=always" "${REDIS_RPS[-1]}" "$p50" "$p99" "$REDIS_N" \
        "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$aof"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

# --- infercache --------------------------------------------------------
run_infercache() { # ROUND CONFIG_INDEX
    local flags="${CONFIG_LIST[$2]}" dir="$TMP/ic-$1-$2"
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    start_infercache "$IC_PORT" "$dir" $flags
    local out="$dir/wrk.txt"
    wrk -t "$THREADS" -c "$CONNS" -d "$DURATION" --latency -s "$LUA" \
        "http://127.0.0.1:$IC_PORT" >"$out"
    local bad entries
    bad="$(wrk_bad "$out")"
    entries="$(curl -sS "http://127.0.0.1:$IC_PORT/v1/stats" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["disk"]["entries"])')"
    if [ "$bad" != 0 ]; then
        echo "infercache $(label "$flags"): $bad errors / non-2xx responses" >&2
        cat "$out" >&2
        exit 1
    fi
    local rps
    rps="$(wrk_rps "$out")"
    eval "IC_RPS_$2+=(\"$rps\")"
    printf '  %-28s %10s ops/s  p50 %7s ms  p99 %7s ms  (%s entries on disk)\n' \
        "infercache $(label "$flags")" "$rps" "$(wrk_p50 "$out")" "$(wrk_p99 "$out")" "$entries"
    kill "$IC_PID"
    wait "$IC_PID" 2>/dev/null || true
}

echo "# kv_put: $(nproc) cores, $CONNS clients, 100-byte values, distinct keys, durable"
for i in "${!CONFIG_LIST[@]}"; do eval "IC_RPS_$i=()"; done
REDIS_RPS=()
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    if [ $((round % 2)) = 1 ]; then run_redis "$round"; fi
    for i in "${!CONFIG_LIST[@]}"; do run_infercache "$round" "$i"; done
    if [ $((round % 2)) = 0 ]; then run_redis "$round"; fi
done

redis="$(mean "${REDIS_RPS[@]}")"
echo "summary (mean of $ROUNDS rounds)"
printf '  %-28s %10s ops/s\n' "redis appendfsync=always" "$redis"
for i in "${!CONFIG_LIST[@]}"; do
    eval "values=(\"\${IC_RPS_$i[@]}\")"
    ic="$(mean "${values[@]}")"
    printf '  %-28s %10s ops/s  ratio %s\n' \
        "infercache $(label "${CONFIG_LIST[$i]}")" "$ic" "$(ratio "$ic" "$redis")"
done
echo "  (target: ratio >= 1.0 for the defaults)"
