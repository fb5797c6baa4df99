#!/usr/bin/env bash
# Server instructions per single-row infer hit, gRPC vs binary REST: the
# noise-free twin of grpc_hit.sh, for before/after comparisons on a busy
# machine (wall-clock rounds swing by 10 % and more there).
#
# Runs infercache under callgrind with the bodies of grpc_hit.sh, warms
# both, then for each protocol zeroes the counters, sends N requests with
# h2load (CONNS connections, one stream each) and dumps: instructions of
# every server thread over those requests, divided by N. The figure counts
# user-space instructions only (not the kernel's, nor the client's).
#
# Environment: N (4000), CONNS (16), PORT (17814), SKIP_BUILD=1.
source "$(dirname "$0")/infer_lib.sh"
trap cleanup EXIT

N="${N:-4000}"
CONNS="${CONNS:-16}"
PORT="${PORT:-17814}"
HERE="$(cd "$(dirname "$0")" && pwd)"

need h2load curl python3 valgrind callgrind_control
build_server
TMP="$(new_tmpdir)"
URL="http://127.0.0.1:$PORT"
python3 "$HERE/grpc_body.py" "$TMP"
header_len="$(cat "$TMP/rest.header_len")"
port_free "$PORT" || { echo "port $PORT is busy" >&2; exit 1; }
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" \
    "$RELEASE/infercache" serve --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" \
    --model "mlp=$ROOT/fixtures/models/mlp.onnx" 2>"$TMP/infercache.log" &
IC_PID=$!
PIDS+=("$IC_PID")
for _ in $(seq 600); do
    curl -sf -o /dev/null "$URL/healthz" && break
    kill -0 "$IC_PID" 2>/dev/null || { echo "infercache exited" >&2; exit 1; }
    sleep 0.5
done

GRPC=(-d "$TMP/grpc.bin" -H 'content-type: application/grpc' -H 'te: trailers'
    "$URL/inference.GRPCInferenceService/ModelInfer")
REST=(-d "$TMP/rest.bin" -H 'content-type: application/octet-stream'
    -H "inference-header-content-length: $header_len" "$URL/v2/models/mlp/infer")
h2load -n 200 -c 4 "${REST[@]}" >/dev/null
h2load -n 200 -c 4 "${GRPC[@]}" >/dev/null

# per_request NAME ARGS...: server instructions per request of one run.
per_request() {
    local name="$1" dump
    shift
    callgrind_control -z "$IC_PID" >/dev/null 2>&1
    h2load -n "$N" -c "$CONNS" -m 1 "$@" >"$TMP/$name.txt"
    callgrind_control -d "$name" "$IC_PID" >/dev/null 2>&1
    awk '/^requests:/ { if ($8 != '"$N"') { print "not all succeeded: " $0 > "/dev/stderr"; exit 1 } }' "$TMP/$name.txt"
    dump="$(grep -l "^desc: Trigger: dump $name\$" "$TMP"/cg.out.* | tail -1)"
    awk -v n="$N" '/^summary:/ { printf "%.0f", $2 / n }' "$dump"
}
echo "# grpc_hit_instructions: callgrind, h2load -n$N -c$CONNS -m1 (h2c)"
g="$(per_request grpc "${GRPC[@]}")"
r="$(per_request rest "${REST[@]}")"
printf '  %-34s %8s instructions/request\n' "grpc hit (1 row, raw)" "$g" \
    "binary REST hit (1 row, h2c)" "$r"
printf '  %-34s %8s   (lower is cheaper)\n' "ratio grpc / rest" "$(ratio "$g" "$r")"
