#!/usr/bin/env bash
# Durable PUT throughput: infercache vs Redis with appendfsync always.
#
# infercache: `PUT /v1/kv/{key}` answers 204 only after the group-commit
# writer's write-ahead log record is synced (redb takes the group just
# after, ARCHITECTURE.md section 2). wrk drives 64 connections with
# put.lua (100-byte values, a new key per request).
#
# Redis: `redis-server --appendonly yes --appendfsync always` fsyncs the AOF
# before it answers (it too groups every command of one event-loop pass
# into one fsync). redis-benchmark drives 64 clients with `SET` of 100-byte
# values over a 10^9 keyspace (-r), no pipelining, REDIS_N requests (about
# as long as a wrk run; redis-benchmark has no duration option).
#
# Each infercache configuration in CONFIGS gets a fresh server and data dir
# per run. Runs alternate order (Redis first in odd rounds, last in even
# rounds). Prints ops/s, p50/p99, the server's CPU time per write, and
# the ratio infercache / Redis per configuration.
#
# Target: ratio >= 1.0 for the default configuration.
#
# Every measurement waits for a quiet machine and is repeated if foreign
# load appeared meanwhile (see `guarded` in lib.sh). Each line also shows
# "dsync": the latency of one O_DSYNC 4 KiB write measured just before it,
# because on a shared host the disk's fsync latency swings by 10x or more
# and every durable-write number follows it.
#
# Environment: ROUNDS (2), DURATION (10s, wrk), REDIS_N (600000),
# CONNS (64), THREADS (2), IC_PORT (17602), REDIS_PORT (17702),
# SKIP_BUILD=1, CONFIGS (`;`-separated flag sets; an empty set is the
# default configuration; a set starting with `@DIR` runs DIR/infercache
# instead of this tree's release build, e.g. a build of an older commit
# for a before/after comparison in one run), e.g.
#   CONFIGS=';--write-delay 1ms;--write-batch 64' benches/load/kv_put.sh
#   CONFIGS=';@/tmp/before' benches/load/kv_put.sh
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
IC_PORT="${IC_PORT:-17602}"
REDIS_PORT="${REDIS_PORT:-17702}"
REDIS_N="${REDIS_N:-600000}"
CONFIGS="${CONFIGS:-;--write-delay 1ms}"
LUA="$(cd "$(dirname "$0")" && pwd)/put.lua"

need wrk curl redis-server redis-benchmark redis-cli
build_release
TMP="$(new_tmpdir)"

IFS=';' read -r -a CONFIG_LIST <<<"$CONFIGS"
[ "${#CONFIG_LIST[@]}" -gt 0 ] || CONFIG_LIST=("")
label() { if [ -n "$1" ]; then echo "$1"; else echo "(defaults)"; fi; }

# CPU ticks (user + system, 1/100 s) a process has used so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# --- Redis -------------------------------------------------------------
# One measurement: a fresh redis-server, REDIS_N SETs, results in $1.csv.
measure_redis() { # OUT_PREFIX
    local dir="$1.d"
    rm -rf "$dir"
    mkdir -p "$dir"
    port_free "$REDIS_PORT" || { echo "port $REDIS_PORT is busy" >&2; exit 1; }
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
        --appendonly yes --appendfsync always --dir "$dir" --save '' \
        --daemonize no --logfile "$dir/redis.log" &
    local pid=$!
    PIDS+=("$pid")
    wait_for_port "$REDIS_PORT" "$pid"
    dsync_probe_ms "$dir" >"$1.dsync"
    local start end before after
    start="$(date +%s.%N)"
    before="$(ticks "$pid")"
    redis-benchmark -p "$REDIS_PORT" -t set -d 100 -c "$CONNS" -r 1000000000 \
        -n "$REDIS_N" --csv >"$1.csv"
    after="$(ticks "$pid")"
    end="$(date +%s.%N)"
    awk -v t=$((after - before)) -v n="$REDIS_N" 'BEGIN { printf "%.1f", t * 10000 / n }' >"$1.cpu"
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }' >"$1.secs"
    redis-cli -p "$REDIS_PORT" dbsize >"$1.keys"
    stop_pid "$pid"
}

run_redis() { # ROUND
    local out="$TMP/redis-$1"
    guarded measure_redis "$out"
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    local rps p50 p99
    rps="$(awk -F'"' '$2 == "SET" { print $4 }' "$out.csv")"
    p50="$(awk -F'"' '$2 == "SET" { print $10 }' "$out.csv")"
    p99="$(awk -F'"' '$2 == "SET" { print $14 }' "$out.csv")"
    REDIS_RPS+=("$rps")
    printf '  %-30s %8s ops/s  p50 %6s ms  p99 %7s ms  CPU %5s us/op  dsync %s ms  (%s SETs in %ss, %s keys)\n' \
        "redis appendfsync=always" "$rps" "$p50" "$p99" "$(cat "$out.cpu")" "$(cat "$out.dsync")" \
        "$REDIS_N" "$(cat "$out.secs")" "$(cat "$out.keys")"
}

# --- infercache --------------------------------------------------------
# One measurement: a fresh server and data dir, wrk for DURATION, the
# wrk output in $1.txt and the disk tier's entry count in $1.entries.
measure_infercache() { # OUT_PREFIX FLAGS
    local dir="$1.d" flags="$2" release="$RELEASE"
    rm -rf "$dir"
    mkdir -p "$dir"
    if [[ "$flags" == @* ]]; then
        RELEASE="${flags%% *}"
        RELEASE="${RELEASE#@}"
        if [[ "$flags" == *" "* ]]; then flags="${flags#* }"; else flags=""; fi
    fi
    # shellcheck disable=SC2086
    start_infercache "$IC_PORT" "$dir" $flags
    RELEASE="$release"
    dsync_probe_ms "$dir" >"$1.dsync"
    local before after
    before="$(ticks "$IC_PID")"
    wrk -t "$THREADS" -c "$CONNS" -d "$DURATION" --latency -s "$LUA" \
        "http://127.0.0.1:$IC_PORT" >"$1.txt"
    after="$(ticks "$IC_PID")"
    awk -v t=$((after - before)) '/requests in/ { n = $1 }
        END { if (n > 0) printf "%.1f", t * 10000 / n }' "$1.txt" >"$1.cpu"
    # /v1/stats: {"disk":{...,"entries":N,...},...}
    curl -sS "http://127.0.0.1:$IC_PORT/v1/stats" |
        grep -o '"disk":{[^}]*}' | grep -o '"entries":[0-9]*' | cut -d: -f2 >"$1.entries"
    awk '/^VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$IC_PID/status" >"$1.rss"
    stop_pid "$IC_PID"
}

run_infercache() { # ROUND CONFIG_INDEX
    local flags="${CONFIG_LIST[$2]}" out="$TMP/ic-$1-$2"
    guarded measure_infercache "$out" "$flags"
    local bad rps
    bad="$(wrk_bad "$out.txt")"
    if [ "$bad" != 0 ]; then
        echo "infercache $(label "$flags"): $bad errors / non-2xx responses" >&2
        cat "$out.txt" >&2
        exit 1
    fi
    rps="$(wrk_rps "$out.txt")"
    eval "IC_RPS_$2+=(\"$rps\")"
    printf '  %-30s %8s ops/s  p50 %6s ms  p99 %7s ms  CPU %5s us/op  dsync %s ms  (%s entries on disk, RSS %s MiB)\n' \
        "infercache $(label "$flags")" "$rps" "$(wrk_p50 "$out.txt")" "$(wrk_p99 "$out.txt")" \
        "$(cat "$out.cpu")" "$(cat "$out.dsync")" "$(cat "$out.entries")" "$(cat "$out.rss")"
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
echo "summary (mean of $ROUNDS rounds; ratio of the means, then each round's ratio)"
printf '  %-30s %10s ops/s\n' "redis appendfsync=always" "$redis"
for i in "${!CONFIG_LIST[@]}"; do
    eval "values=(\"\${IC_RPS_$i[@]}\")"
    ic="$(mean "${values[@]}")"
    per_round=""
    for r in "${!values[@]}"; do
        per_round+=" $(ratio "${values[$r]}" "${REDIS_RPS[$r]}")"
    done
    printf '  %-30s %10s ops/s  ratio %s  (rounds:%s)\n' \
        "infercache $(label "${CONFIG_LIST[$i]}")" "$ic" "$(ratio "$ic" "$redis")" "$per_round"
done
echo "  (target: ratio >= 1.0 for the defaults)"
