#!/usr/bin/env bash
# GET throughput and p99 of infercache's memory tier vs a bare hyper server.
#
# Starts infercache (temporary data dir) and the bare_hyper baseline on two
# loopback ports, stores one 100-byte value, then runs wrk against
# `GET /v1/kv/KEY` and against the baseline (which returns a fixed 100-byte
# body) in alternating order, ROUNDS times. Prints req/s, p50 and p99 of
# every run, the server's CPU time per request, and the mean ratio
# infercache / bare. Every measurement waits for a quiet machine and is
# repeated if foreign load appeared meanwhile (`guarded`, lib.sh).
#
# Target: ratio >= 0.90 and infercache p99 < 2 ms.
#
# Environment: ROUNDS (default 2), DURATION (10s), CONNS (64), THREADS (2),
# IC_PORT (17601), BARE_PORT (17701), SKIP_BUILD=1 to reuse target/release,
# INFERCACHE_BIN_DIR (pinned binaries, see lib.sh), IC_FLAGS (extra `serve`
# flags), PACED_MS (pace every connection, see paced.lua).
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
IC_PORT="${IC_PORT:-17601}"
BARE_PORT="${BARE_PORT:-17701}"
KEY="bench-get-key"
# PACED_MS=N: each connection waits N ms before each request (paced.lua),
# to read latency below saturation instead of at it.
PACING=""
if [ -n "${PACED_MS:-}" ]; then
    export PACED_MS
    PACING="-s $(cd "$(dirname "$0")" && pwd)/paced.lua"
fi

need wrk curl
build_release
TMP="$(new_tmpdir)"

# shellcheck disable=SC2086
start_infercache "$IC_PORT" "$TMP" ${IC_FLAGS:-}
start_bare "$BARE_PORT" "$TMP"

head -c 100 /dev/zero | tr '\0' 'x' >"$TMP/value"
status="$(curl -sS -o /dev/null -w '%{http_code}' -X PUT \
    --data-binary "@$TMP/value" "http://127.0.0.1:$IC_PORT/v1/kv/$KEY")"
[ "$status" = 204 ] || { echo "PUT answered $status" >&2; exit 1; }
tier="$(curl -sS -D - -o "$TMP/got" "http://127.0.0.1:$IC_PORT/v1/kv/$KEY" |
    awk -F': *' 'tolower($1) == "x-cache-tier" { print $2 }' | tr -d '\r')"
cmp -s "$TMP/value" "$TMP/got" || { echo "GET returned a different value" >&2; exit 1; }
[ "$tier" = memory ] || { echo "GET was served from tier '$tier', not memory" >&2; exit 1; }

IC_URL="http://127.0.0.1:$IC_PORT/v1/kv/$KEY"
BARE_URL="http://127.0.0.1:$BARE_PORT/v1/kv/$KEY"

# CPU ticks (user + system, 1/100 s) a process has used so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# One wrk run; also the server's CPU time per request over the run, in
# microseconds, in OUT.cpu. Throughput on 2 shared cores follows CPU per
# request (wrk takes about one core), and this number moves far less with
# foreign load than req/s does.
measure_wrk() { # PID URL OUT
    local before after
    before="$(ticks "$1")"
    # shellcheck disable=SC2086
    wrk -t "$THREADS" -c "$CONNS" -d "$DURATION" --latency $PACING "$2" >"$3"
    after="$(ticks "$1")"
    awk -v t=$((after - before)) '/requests in/ { n = $1 }
        END { if (n > 0) printf "%.2f", t * 10000 / n }' "$3" >"$3.cpu"
}

run_wrk() { # NAME PID URL OUT
    local pid="$2"
    set -- "$1" "$3" "$4"
    guarded measure_wrk "$pid" "$2" "$3"
    local bad
    bad="$(wrk_bad "$3")"
    if [ "$bad" != 0 ]; then
        echo "$1: $bad errors / non-2xx responses; output:" >&2
        cat "$3" >&2
        exit 1
    fi
    printf '  %-11s %10s req/s   p50 %7s ms   p99 %7s ms   server CPU %6s us/req\n' \
        "$1" "$(wrk_rps "$3")" "$(wrk_p50 "$3")" "$(wrk_p99 "$3")" "$(cat "$3.cpu")"
}

echo "# kv_get: $(nproc) cores, wrk -t$THREADS -c$CONNS -d$DURATION --latency${PACED_MS:+ paced ${PACED_MS}ms}, 100-byte body"
# Short warm-up of both (connection setup, page faults, moka's first hits).
wrk -t "$THREADS" -c "$CONNS" -d 2s "$IC_URL" >/dev/null
wrk -t "$THREADS" -c "$CONNS" -d 2s "$BARE_URL" >/dev/null

IC_RPS=() BARE_RPS=() IC_P99=() BARE_P99=() IC_CPU=() BARE_CPU=()
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    if [ $((round % 2)) = 1 ]; then order="ic bare"; else order="bare ic"; fi
    for who in $order; do
        out="$TMP/wrk-$who-$round.txt"
        if [ "$who" = ic ]; then
            run_wrk infercache "$IC_PID" "$IC_URL" "$out"
            IC_RPS+=("$(wrk_rps "$out")") IC_P99+=("$(wrk_p99 "$out")") IC_CPU+=("$(cat "$out.cpu")")
        else
            run_wrk bare_hyper "$BARE_PID" "$BARE_URL" "$out"
            BARE_RPS+=("$(wrk_rps "$out")") BARE_P99+=("$(wrk_p99 "$out")") BARE_CPU+=("$(cat "$out.cpu")")
        fi
    done
    echo "  ratio       $(ratio "${IC_RPS[-1]}" "${BARE_RPS[-1]}")"
done

ic="$(mean "${IC_RPS[@]}")" bare="$(mean "${BARE_RPS[@]}")"
echo "summary"
echo "  infercache  mean $ic req/s, p99 per round: ${IC_P99[*]} ms, CPU $(mean "${IC_CPU[@]}") us/req"
echo "  bare_hyper  mean $bare req/s, p99 per round: ${BARE_P99[*]} ms, CPU $(mean "${BARE_CPU[@]}") us/req"
echo "  ratio       $(ratio "$ic" "$bare")   (target >= 0.90, infercache p99 < 2 ms)"
