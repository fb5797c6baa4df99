#!/usr/bin/env bash
# How many shared hits a server copies into its own tiers.
#
# Starts redis-server and two infercache servers on it (A and B, fresh data
# dirs), stores N distinct 100-byte keys through A, reads each once through
# B (64 at a time), then prints B's memory and disk entries next to its
# shared hits. Every shared hit should be copied into both local tiers
# unless a write to the same key committed during the read (the fences,
# ARCHITECTURE.md section 3); a shortfall means promotions were skipped.
#
# Usage: benches/load/shared_promote.sh [BIN]   (default target/release/infercache)
# Environment: KEYS (30000), REDIS_PORT (17950), A_PORT (17951), B_PORT (17952).
set -euo pipefail
BIN="${1:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/infercache}"
N="${KEYS:-30000}"
REDIS_PORT="${REDIS_PORT:-17950}" A_PORT="${A_PORT:-17951}" B_PORT="${B_PORT:-17952}"
T="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
up() { # PORT PATH
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1$2" >/dev/null && return; sleep 0.1; done
    echo "nothing answers on port $1" >&2; exit 1
}
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$T" --daemonize no --logfile "$T/redis.log" &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
for side in a:"$A_PORT" b:"$B_PORT"; do
    RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:${side#*:}" --data-dir "$T/${side%%:*}" \
        --shared-url "redis://127.0.0.1:$REDIS_PORT" 2>"$T/${side%%:*}.log" &
    PIDS+=($!)
    up "${side#*:}" /healthz
done
head -c 100 /dev/zero | tr '\0' x >"$T/value"
echo "PUT through A:"
curl -sS -Z --parallel-max 32 -X PUT --data-binary "@$T/value" -o /dev/null \
    -w '%{http_code}\n' "http://127.0.0.1:$A_PORT/v1/kv/k-[0-$((N - 1))]" 2>/dev/null | sort | uniq -c
echo "GET through B:"
curl -sS -Z --parallel-max 64 -o /dev/null -w '%{http_code}\n' \
    "http://127.0.0.1:$B_PORT/v1/kv/k-[0-$((N - 1))]" 2>/dev/null | sort | uniq -c
sleep 1
curl -s "http://127.0.0.1:$B_PORT/v1/stats" | python3 -c 'import json, sys
s = json.load(sys.stdin)
print("B:", s["shared"]["hits"], "shared hits,", s["memory"]["entries"], "kept in memory,", s["disk"]["entries"], "on disk")'
