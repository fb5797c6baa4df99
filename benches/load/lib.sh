# Shared helpers of the load benchmarks (sourced, not run).
#
# Every process a benchmark starts is recorded in PIDS and stopped by its
# PID on exit (`trap cleanup EXIT`); temporary directories in TMPDIRS are
# removed. Only 127.0.0.1 is ever contacted.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RELEASE="$ROOT/target/release"
PIDS=()
TMPDIRS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            # Give a graceful shutdown (infercache flushes its writer) a
            # few seconds before insisting.
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    local dir
    for dir in "${TMPDIRS[@]:-}"; do
        [ -n "$dir" ] && rm -rf "$dir"
    done
}

need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "missing $tool (apt-get install -y wrk redis-server redis-tools curl)" >&2
            exit 1
        }
    done
}

# Build the release server and the baseline unless SKIP_BUILD=1.
build_release() {
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        (cd "$ROOT" && cargo build --release --bin infercache --example bare_hyper)
    fi
}

new_tmpdir() {
    local dir
    dir="$(mktemp -d /tmp/infercache-bench.XXXXXX)"
    TMPDIRS+=("$dir")
    echo "$dir"
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_for_port PORT PID: until 127.0.0.1:PORT accepts, or PID dies.
wait_for_port() {
    local port="$1" pid="$2"
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || {
            echo "process $pid exited before listening on $port" >&2
            return 1
        }
        sleep 0.05
    done
    echo "nothing listening on 127.0.0.1:$port after 10s" >&2
    return 1
}

# start_infercache PORT DATA_DIR [extra serve flags...]; sets IC_PID.
start_infercache() {
    local port="$1" dir="$2"
    shift 2
    port_free "$port" || { echo "port $port is busy" >&2; exit 1; }
    RUST_LOG="${RUST_LOG:-warn}" "$RELEASE/infercache" serve \
        --listen "127.0.0.1:$port" --data-dir "$dir/data" "$@" \
        2>"$dir/infercache.log" &
    IC_PID=$!
    PIDS+=("$IC_PID")
    wait_for_port "$port" "$IC_PID"
}

# start_bare PORT LOGDIR; sets BARE_PID.
start_bare() {
    local port="$1" dir="$2"
    port_free "$port" || { echo "port $port is busy" >&2; exit 1; }
    "$RELEASE/examples/bare_hyper" "127.0.0.1:$port" 2>"$dir/bare_hyper.log" &
    BARE_PID=$!
    PIDS+=("$BARE_PID")
    wait_for_port "$port" "$BARE_PID"
}

# A wrk latency like 812.00us / 1.23ms / 1.01s, in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000
        else if (v ~ /ms$/) n += 0
        else if (v ~ /m$/) n *= 60000
        else if (v ~ /s$/) n *= 1000
        printf "%.3f", n
    }'
}

# Fields of a saved `wrk --latency` output.
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
wrk_p50() { to_ms "$(awk '$1 == "50%" { print $2 }' "$1")"; }
wrk_p99() { to_ms "$(awk '$1 == "99%" { print $2 }' "$1")"; }
# Non-2xx responses and socket errors; both must be zero for a valid run.
wrk_bad() {
    awk '/Non-2xx or 3xx responses:/ { n += $NF }
         /Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i + 0 }
         END { print n + 0 }' "$1"
}

# The machine is shared with builds (cargo, rustc, the linker, test
# binaries run by cargo) that take whole cores. A measurement runs only
# when none is running, and is repeated (up to 3 times) if one started
# during it. QUIET=0 turns this off.
BUSY_PATTERN='^(cargo|rustc|cc|ld|clippy-driver|cargo-clippy|rustdoc)$'

builds_running() { pgrep "$BUSY_PATTERN" >/dev/null 2>&1; }

wait_quiet() {
    [ "${QUIET:-1}" = 1 ] || return 0
    local waited=0
    while builds_running; do
        [ "$waited" = 0 ] && echo "  (waiting for concurrent builds to finish)" >&2
        sleep 2
        waited=$((waited + 2))
        if [ "$waited" -ge 600 ]; then
            echo "  (still busy after 10 min; measuring anyway)" >&2
            return 0
        fi
    done
    [ "$waited" = 0 ] || sleep 3 # let page cache writeback settle
}

# guarded CMD...: run CMD on a quiet machine; repeat it if a build ran
# meanwhile. CMD must be repeatable and leave its result where the caller
# reads it (the last attempt wins).
guarded() {
    local attempt flag sampler
    flag="$(mktemp /tmp/infercache-bench-busy.XXXXXX)"
    for attempt in 1 2 3; do
        wait_quiet
        : >"$flag"
        if [ "${QUIET:-1}" = 1 ]; then
            (while :; do builds_running && echo busy >"$flag"; sleep 0.5; done) &
            sampler=$!
        fi
        "$@"
        if [ "${QUIET:-1}" = 1 ]; then
            kill "$sampler" 2>/dev/null || true
            wait "$sampler" 2>/dev/null || true
        fi
        [ -s "$flag" ] || break
        [ "$attempt" = 3 ] && { echo "  (a build ran during every attempt; keeping the last)" >&2; break; }
        echo "  (a build ran during this measurement; repeating it)" >&2
    done
    rm -f "$flag"
}

# to_file OUT CMD...: CMD's standard output into OUT (for `guarded`).
to_file() {
    local out="$1"
    shift
    "$@" >"$out"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
mean() { printf '%s\n' "$@" | awk '{ s += $1; n++ } END { if (n) printf "%.1f", s / n }'; }
