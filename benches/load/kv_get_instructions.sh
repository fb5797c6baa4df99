#!/usr/bin/env bash
# Server instructions per KV GET memory hit vs per bare hyper request: the
# noise-free twin of kv_get.sh, for before/after comparisons on a busy
# machine (wall-clock rounds swing by 10 % and more there).
#
# Runs infercache and the bare_hyper baseline under callgrind, stores one
# 100-byte value, warms both, then for each server zeroes the counters,
# sends N HTTP/1.1 keep-alive requests with h2load (CONNS connections) and
# dumps: instructions of every server thread over those requests, divided
# by N. The figure counts user-space instructions only (not the kernel's,
# nor the client's).
#
# The header timeout is raised: under callgrind a run takes longer than
# the default 10 s, and connections were cut at that point.
#
# Environment: N (20000), CONNS (16), IC_PORT (17611), BARE_PORT (17711),
# SKIP_BUILD=1, INFERCACHE_BIN_DIR (pinned binaries, see lib.sh),
# KEEP_DUMPS=DIR (copy both dumps there, for `callgrind_annotate`).
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

N="${N:-20000}"
CONNS="${CONNS:-16}"
IC_PORT="${IC_PORT:-17611}"
BARE_PORT="${BARE_PORT:-17711}"
KEY="bench-get-key"

need h2load curl valgrind callgrind_control
build_release
TMP="$(new_tmpdir)"

# under_callgrind NAME PORT CMD...: start CMD under callgrind; sets CG_PID.
under_callgrind() {
    local name="$1" port="$2"
    shift 2
    port_free "$port" || { echo "port $port is busy" >&2; exit 1; }
    # Uncompressed names: every dump reads on its own (callgrind_annotate).
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$TMP/$name.cg" \
        --compress-strings=no --compress-pos=no \
        "$@" 2>"$TMP/$name.log" &
    CG_PID=$!
    PIDS+=("$CG_PID")
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "$CG_PID" 2>/dev/null || { echo "$name exited" >&2; exit 1; }
        sleep 0.5
    done
    echo "$name: nothing listening on $port" >&2
    exit 1
}

under_callgrind infercache "$IC_PORT" "$RELEASE/infercache" serve \
    --listen "127.0.0.1:$IC_PORT" --data-dir "$TMP/data" --header-timeout 300s
IC_PID="$CG_PID"
under_callgrind bare_hyper "$BARE_PORT" "$RELEASE/examples/bare_hyper" "127.0.0.1:$BARE_PORT"
BARE_PID="$CG_PID"

head -c 100 /dev/zero | tr '\0' 'x' >"$TMP/value"
status="$(curl -sS -o /dev/null -w '%{http_code}' -X PUT \
    --data-binary "@$TMP/value" "http://127.0.0.1:$IC_PORT/v1/kv/$KEY")"
[ "$status" = 204 ] || { echo "PUT answered $status" >&2; exit 1; }
IC_URL="http://127.0.0.1:$IC_PORT/v1/kv/$KEY"
BARE_URL="http://127.0.0.1:$BARE_PORT/v1/kv/$KEY"
h2load --h1 -n 2000 -c "$CONNS" "$IC_URL" >/dev/null
h2load --h1 -n 2000 -c "$CONNS" "$BARE_URL" >/dev/null

# per_request NAME PID URL: server instructions per request of one run.
per_request() {
    local name="$1" pid="$2" url="$3" dump
    callgrind_control -z "$pid" >/dev/null 2>&1
    h2load --h1 -n "$N" -c "$CONNS" "$url" >"$TMP/$name.txt"
    callgrind_control -d "$name" "$pid" >/dev/null 2>&1
    awk '/^requests:/ { if ($8 != '"$N"') { print "not all succeeded: " $0 > "/dev/stderr"; exit 1 } }' "$TMP/$name.txt"
    dump="$(grep -l "^desc: Trigger: dump $name\$" "$TMP"/*.cg.* | tail -1)"
    [ -n "${KEEP_DUMPS:-}" ] && cp "$dump" "$KEEP_DUMPS/$name.cg"
    awk -v n="$N" '/^summary:/ { printf "%.0f", $2 / n }' "$dump"
}
echo "# kv_get_instructions: callgrind, h2load --h1 -n$N -c$CONNS, 100-byte body"
i="$(per_request infercache "$IC_PID" "$IC_URL")"
b="$(per_request bare_hyper "$BARE_PID" "$BARE_URL")"
printf '  %-24s %8s instructions/request\n' "infercache KV GET hit" "$i" \
    "bare_hyper" "$b"
printf '  %-24s %8s   (bare / infercache; 1.0 = as cheap as bare)\n' "ratio" "$(ratio "$b" "$i")"
