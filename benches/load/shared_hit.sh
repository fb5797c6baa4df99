#!/usr/bin/env bash
# A shared-tier hit vs a bare Redis GET of the same value (issue #12: a
# shared hit costs at most one Redis round trip plus the local work).
#
# Starts one redis-server (`--save "" --appendonly no`, temporary dir) and
# infercache A with `--shared-url` on it, and stores KEYS distinct 100-byte
# KV values `sh-0` .. `sh-<KEYS-1>` through A (`curl -Z`; a PUT answers
# after the shared write). Then, ROUNDS times, in alternating order:
#
#   infercache  a fresh server B (empty data dir, same Redis), loaded by
#               wrk with shared_walk.lua: every request a distinct key, in
#               order, so each is a shared hit (B's local tiers never held
#               it). B's metrics must show only shared hits (a repeat would
#               be a memory hit: raise KEYS) and wrk no non-2xx answer.
#   redis       `redis-benchmark -t get` on KEYS keys `key:NNNNNNNNNNNN`
#               holding a value of the size infercache's shared entries
#               have in Redis (100 bytes plus the wire header), at the
#               same connection count, `-P 1`, `-r KEYS`.
#
# Prints req/s, p50 and p99 of each, the ratio infercache / redis, Redis
# commands per shared hit (`INFO commandstats` after `CONFIG RESETSTAT`:
# `cmdstat_get` calls and all calls, over B's shared hits) and CPU time per
# request of B and of redis-server.
#
# Environment: ROUNDS (2), DURATION (5s), CONNS (64), THREADS (2, wrk),
# KEYS (200000), REDIS_REQUESTS (300000), VALUE_SIZE (100), REDIS_PORT
# (17731), A_PORT (17732), B_PORT (17733), SKIP_BUILD=1 to reuse
# target/release, INFERCACHE_BIN_DIR (a pinned binary, see lib.sh), QUIET=0
# (measure on a busy machine; see lib.sh).
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-5s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
KEYS="${KEYS:-200000}"
REDIS_REQUESTS="${REDIS_REQUESTS:-300000}"
VALUE_SIZE="${VALUE_SIZE:-100}"
REDIS_PORT="${REDIS_PORT:-17731}"
A_PORT="${A_PORT:-17732}"
B_PORT="${B_PORT:-17733}"
LUA="$(cd "$(dirname "$0")" && pwd)/shared_walk.lua"

need wrk curl redis-server redis-cli redis-benchmark
if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${INFERCACHE_BIN_DIR:-}" ]; then
    (cd "$ROOT" && cargo build --release --bin infercache)
fi
TMP="$(new_tmpdir)"
SHARED_URL="redis://127.0.0.1:$REDIS_PORT"
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
# CPU ticks (user + system, 1/100 s) a process has used so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# metric NAME_WITH_LABELS PORT: one value from /metrics (0 if absent).
metric() {
    curl -sS "http://127.0.0.1:$2/metrics" | awk -v m="$1" '$1 == m { v = $2 } END { print v + 0 }'
}
# cmdstat NAME: calls of one command since the last CONFIG RESETSTAT.
cmdstat() {
    rcli info commandstats | tr -d '\r' |
        awk -F'[:=,]' -v c="cmdstat_$1" '$1 == c { n = $3 } END { print n + 0 }'
}
# All calls but the benchmark's own INFO / CONFIG.
cmdstat_total() {
    rcli info commandstats | tr -d '\r' |
        awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" && $1 !~ /^cmdstat_config/ { n += $3 } END { print n + 0 }'
}

# --- Redis and server A; fill ------------------------------------------
mkdir -p "$TMP/redis" "$TMP/a"
start_redis "$REDIS_PORT" "$TMP/redis"
start_infercache "$A_PORT" "$TMP/a" --shared-url "$SHARED_URL"
A_PID="$IC_PID"

head -c "$VALUE_SIZE" /dev/zero | tr '\0' 'x' >"$TMP/value"
start="$(date +%s.%N)"
curl -sS --no-progress-meter -Z --parallel-max 32 -X PUT --data-binary "@$TMP/value" \
    -o /dev/null -w '%{http_code}\n' \
    "http://127.0.0.1:$A_PORT/v1/kv/sh-[0-$((KEYS - 1))]" >"$TMP/fill.codes"
end="$(date +%s.%N)"
bad="$(grep -cv '^204$' "$TMP/fill.codes" || true)"
if [ "$bad" != 0 ] || [ "$(wc -l <"$TMP/fill.codes")" != "$KEYS" ]; then
    echo "fill: $bad of $KEYS PUTs not answered 204" >&2
    sort "$TMP/fill.codes" | uniq -c >&2
    exit 1
fi
stop_pid "$A_PID"
# The stored size of one entry in Redis (value plus wire header); the
# Redis baseline gets values of that size.
sample="$(rcli --scan --pattern 'ic1:{*}:g*' | awk 'NR == 1')"
STORED="$(rcli strlen "$sample")"
# The baseline's keys, as redis-benchmark's `-r` names them.
awk -v n="$KEYS" -v size="$STORED" 'BEGIN {
    v = sprintf("%" size "s", ""); gsub(/ /, "y", v)
    for (i = 0; i < n; i++) {
        k = sprintf("key:%012d", i)
        printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, size, v
    }
}' | rcli --pipe >"$TMP/pipe.log"
dbsize="$(rcli dbsize)"
echo "# shared_hit: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$KEYS keys of $VALUE_SIZE B filled through A in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')s" \
    "($STORED B each in Redis, $dbsize keys in all), wrk -t$THREADS -c$CONNS -d$DURATION vs" \
    "redis-benchmark -t get -d $STORED -c $CONNS -P 1 -r $KEYS -n $REDIS_REQUESTS"

# --- one measurement each -----------------------------------------------
# A fresh B: empty data dir, same Redis; one miss first so its connection
# and the KV generation read are not measured.
measure_ic() { # OUT_PREFIX
    local dir="$1.d" before rbefore
    rm -rf "$dir"
    mkdir -p "$dir"
    start_infercache "$B_PORT" "$dir" --shared-url "$SHARED_URL"
    curl -sS -o /dev/null "http://127.0.0.1:$B_PORT/v1/kv/warm-up-miss"
    rcli config resetstat >/dev/null
    before="$(ticks "$IC_PID")" rbefore="$(ticks "$REDIS_PID")"
    KEYS="$KEYS" WRK_THREADS="$THREADS" \
        wrk -t "$THREADS" -c "$CONNS" -d "$DURATION" --latency -s "$LUA" \
        "http://127.0.0.1:$B_PORT" >"$1.txt"
    {
        echo "ticks $(($(ticks "$IC_PID") - before)) $(($(ticks "$REDIS_PID") - rbefore))"
        echo "get $(cmdstat get)"
        echo "total $(cmdstat_total)"
        for tier in shared memory disk; do
            echo "$tier $(metric "infercache_cache_hits_total{tier=\"$tier\"}" "$B_PORT")"
        done
        echo "misses $(metric infercache_cache_misses_total "$B_PORT")"
    } >"$1.stats"
    stop_pid "$IC_PID"
}

measure_redis() { # OUT_PREFIX
    local rbefore
    rcli config resetstat >/dev/null
    rbefore="$(ticks "$REDIS_PID")"
    redis-benchmark -p "$REDIS_PORT" -t get -d "$STORED" -c "$CONNS" -P 1 \
        -r "$KEYS" -n "$REDIS_REQUESTS" --csv >"$1.csv"
    echo "ticks $(($(ticks "$REDIS_PID") - rbefore))" >"$1.stats"
    echo "get $(cmdstat get)" >>"$1.stats"
}

stat() { awk -v k="$1" -v i="${3:-2}" '$1 == k { print $i }' "$2"; }
div() { awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { if (b > 0) printf f, a / b; else print "n/a" }'; }
# CPU microseconds per request from TICKS (1/100 s) over N requests.
us_per() { awk -v t="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", t * 10000 / n; else print "n/a" }'; }
wrk_requests() { awk '/requests in/ { print $1 }' "$1"; }

IC_RPS=() REDIS_RPS=() PER_HIT=() PER_HIT_ALL=()
run_ic() { # ROUND
    local out="$TMP/ic-$1"
    guarded measure_ic "$out"
    local bad requests shared local_hits
    bad="$(wrk_bad "$out.txt")" requests="$(wrk_requests "$out.txt")"
    shared="$(stat shared "$out.stats")"
    local_hits=$(($(stat memory "$out.stats") + $(stat disk "$out.stats")))
    if [ "$bad" != 0 ] || [ "$local_hits" != 0 ] || [ "$shared" -lt "$requests" ]; then
        echo "infercache: $bad non-2xx/errors, $local_hits local hits (KEYS too small?)," \
            "$shared shared hits for $requests requests; wrk output:" >&2
        cat "$out.txt" "$out.stats" >&2
        exit 1
    fi
    IC_RPS+=("$(wrk_rps "$out.txt")")
    PER_HIT+=("$(div "$(stat get "$out.stats")" "$shared" %.4f)")
    PER_HIT_ALL+=("$(div "$(stat total "$out.stats")" "$shared" %.4f)")
    printf '  %-11s %9s req/s  p50 %6s ms  p99 %6s ms  %s shared hits (all requests), Redis GETs per hit %s, commands per hit %s; CPU us/req: infercache %s, redis %s\n' \
        infercache "$(wrk_rps "$out.txt")" "$(wrk_p50 "$out.txt")" "$(wrk_p99 "$out.txt")" \
        "$shared" "${PER_HIT[-1]}" "${PER_HIT_ALL[-1]}" \
        "$(us_per "$(stat ticks "$out.stats")" "$shared")" "$(us_per "$(stat ticks "$out.stats" 3)" "$shared")"
}

run_redis() { # ROUND
    local out="$TMP/redis-$1"
    guarded measure_redis "$out"
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    local rps p50 p99
    rps="$(awk -F'"' '$2 == "GET" { print $4 }' "$out.csv")"
    p50="$(awk -F'"' '$2 == "GET" { print $10 }' "$out.csv")"
    p99="$(awk -F'"' '$2 == "GET" { print $14 }' "$out.csv")"
    REDIS_RPS+=("$rps")
    printf '  %-11s %9s req/s  p50 %6s ms  p99 %6s ms  %s GETs; CPU us/req: redis %s\n' \
        redis "$rps" "$p50" "$p99" "$(stat get "$out.stats")" \
        "$(us_per "$(stat ticks "$out.stats")" "$REDIS_REQUESTS")"
}

for round in $(seq "$ROUNDS"); do
    echo "round $round (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    if [ $((round % 2)) = 1 ]; then order="ic redis"; else order="redis ic"; fi
    for who in $order; do "run_$who" "$round"; done
    echo "  ratio       $(ratio "${IC_RPS[-1]}" "${REDIS_RPS[-1]}")"
done

ic="$(mean "${IC_RPS[@]}")" redis="$(mean "${REDIS_RPS[@]}")"
echo "summary (load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo "  infercache shared hits  mean $ic req/s; Redis GETs per hit ${PER_HIT[*]}; all commands per hit ${PER_HIT_ALL[*]}"
echo "  redis-benchmark GET     mean $redis req/s"
echo "  ratio                   $(ratio "$ic" "$redis")"
