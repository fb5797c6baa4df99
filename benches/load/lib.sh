# Shared helpers of the load benchmarks (sourced, not run).
#
# Every process a benchmark starts is recorded in PIDS and stopped by its
# PID on exit (`trap cleanup EXIT`); temporary directories in TMPDIRS are
# removed. Only 127.0.0.1 is ever contacted.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# INFERCACHE_BIN_DIR pins the binaries (infercache and examples/bare_hyper
# under it) while others rebuild target/release.
RELEASE="${INFERCACHE_BIN_DIR:-$ROOT/target/release}"
PIDS=()
TMPDIRS=()
# new_tmpdir is called as `TMP="$(new_tmpdir)"`, in a subshell, so it
# records its directories in this file for `cleanup` (an array would not
# reach the parent shell).
LIB_TMP_LIST="$(mktemp /tmp/infercache-bench-dirs.XXXXXX)"

# Whether PID is still a child of this script (not a recycled PID).
is_child() {
    [ "$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')" = "$$" ]
}

cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        if is_child "$pid"; then
            kill "$pid" 2>/dev/null || true
            # Give a graceful shutdown (infercache flushes its writer) a
            # few seconds before insisting.
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if is_child "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
        fi
        wait "$pid" 2>/dev/null || true
    done
    local dir
    while read -r dir; do
        TMPDIRS+=("$dir")
    done <"$LIB_TMP_LIST"
    for dir in "${TMPDIRS[@]:-}"; do
        case "$dir" in
            /tmp/infercache-bench.*) rm -rf "$dir" ;;
        esac
    done
    rm -f "$LIB_TMP_LIST"
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

# stop_pid PID: stop one process this script started, and forget it.
stop_pid() {
    local pid="$1" kept=() p
    if is_child "$pid"; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    for p in "${PIDS[@]:-}"; do
        if [ -n "$p" ] && [ "$p" != "$pid" ]; then kept+=("$p"); fi
    done
    PIDS=("${kept[@]:-}")
    return 0
}

# Build the release server and the baseline unless SKIP_BUILD=1 or the
# binaries are pinned.
build_release() {
    if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${INFERCACHE_BIN_DIR:-}" ]; then
        (cd "$ROOT" && cargo build --release --bin infercache --example bare_hyper)
    fi
}

new_tmpdir() {
    local dir
    dir="$(mktemp -d /tmp/infercache-bench.XXXXXX)"
    TMPDIRS+=("$dir")
    echo "$dir" >>"$LIB_TMP_LIST"
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

# The machine is shared: builds (cargo, rustc, the linker, test binaries
# run by cargo) and other people's benchmarks (their wrk, redis, infercache,
# python load generators) take whole cores and the disk. A measurement
# starts only on a quiet machine: no foreign build or load generator, no
# foreign server using CPU, and under QUIET_PCT% (15) of all CPU busy over a
# second. It is repeated (up to 3 times) if foreign load appeared during it
# or right after it. Processes this script started do not count. QUIET=0
# turns all of this off.
LIB_SELF_PID=$$
LIB_FOREIGN='^(cargo|rustc|cc|ld|clippy-driver|cargo-clippy|rustdoc|wrk|redis-server|redis-benchmark|bare_hyper|infercache|pytest|python3?|tmp_bench_.*)$'

# Whether PID descends from this script.
lib_is_mine() {
    local pid="$1" ppid
    while [ "$pid" -gt 1 ] 2>/dev/null; do
        [ "$pid" = "$LIB_SELF_PID" ] && return 0
        ppid="$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null)" || return 1
        [ -n "$ppid" ] || return 1
        pid="$ppid"
    done
    return 1
}

# Whether PID used more than 10% of a core over 0.3 s.
lib_cpu_busy() {
    local a b
    a="$(awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0)"
    sleep 0.3
    b="$(awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0)"
    [ $((b - a)) -gt 3 ]
}

# Prints the first foreign busy process ("PID NAME"), if any. Servers count
# only while they use CPU; everything else while it exists.
foreign_load() {
    local pid name
    while read -r pid name; do
        [ -n "$pid" ] || continue
        lib_is_mine "$pid" && continue
        case "$name" in
            infercache | bare_hyper | redis-server) lib_cpu_busy "$pid" || continue ;;
        esac
        echo "$pid $name"
        return 0
    done < <(pgrep -l "$LIB_FOREIGN" 2>/dev/null || true)
    return 1
}

# Percent of all CPUs busy (not idle, not iowait) over one second.
cpu_busy_pct() {
    local a b
    a="$(head -1 /proc/stat)"
    sleep 1
    b="$(head -1 /proc/stat)"
    printf '%s\n%s\n' "$a" "$b" | awk '
        { idle[NR] = $5 + $6; total[NR] = 0; for (i = 2; i <= NF; i++) total[NR] += $i }
        END { t = total[2] - total[1]; printf "%d", (t > 0 ? 100 * (t - (idle[2] - idle[1])) / t : 0) }'
}

machine_busy() {
    foreign_load >/dev/null || [ "$(cpu_busy_pct)" -gt "${QUIET_PCT:-15}" ]
}

wait_quiet() {
    [ "${QUIET:-1}" = 1 ] || return 0
    local waited=0
    while machine_busy; do
        [ "$waited" = 0 ] && echo "  (waiting for the machine to be quiet)" >&2
        sleep 2
        waited=$((waited + 3))
        if [ "$waited" -ge "${QUIET_MAX_WAIT:-900}" ]; then
            echo "  (still busy after ${waited}s; measuring anyway)" >&2
            return 0
        fi
    done
}

# guarded CMD...: run CMD on a quiet machine; repeat it if foreign load
# appeared meanwhile. CMD must be repeatable and leave its result where the caller
# reads it (the last attempt wins).
guarded() {
    local attempt flag sampler
    flag="$(mktemp /tmp/infercache-bench-busy.XXXXXX)"
    for attempt in 1 2 3; do
        wait_quiet
        : >"$flag"
        if [ "${QUIET:-1}" = 1 ]; then
            (while :; do foreign_load >>"$flag"; sleep 0.5; done) &
            sampler=$!
        fi
        "$@"
        if [ "${QUIET:-1}" = 1 ]; then
            kill "$sampler" 2>/dev/null || true
            wait "$sampler" 2>/dev/null || true
            # Load that outlived the measurement probably overlapped it.
            if machine_busy; then echo "busy after the run" >>"$flag"; fi
        fi
        [ -s "$flag" ] || break
        [ "$attempt" = 3 ] && { echo "  (busy during every attempt; keeping the last)" >&2; break; }
        echo "  (foreign load during this measurement: $(head -1 "$flag"); repeating it)" >&2
    done
    rm -f "$flag"
}

# to_file OUT CMD...: CMD's standard output into OUT (for `guarded`).
to_file() {
    local out="$1"
    shift
    "$@" >"$out"
}

# Latency of one durable 4 KiB write here and now (dd with O_DSYNC), in
# ms: the disk's share of a commit, which swings widely on a shared host.
dsync_probe_ms() { # DIR
    local secs
    secs="$(dd if=/dev/zero of="$1/dsync-probe" bs=4k count=200 oflag=dsync 2>&1 |
        awk '/copied/ { for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^s,?$/) print $i }')"
    rm -f "$1/dsync-probe"
    awk -v s="$secs" 'BEGIN { printf "%.3f", s * 1000 / 200 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
mean() { printf '%s\n' "$@" | awk '{ s += $1; n++ } END { if (n) printf "%.1f", s / n }'; }

# start_redis PORT DIR: a redis-server without persistence on loopback,
# its files in DIR; sets REDIS_PID (also in PIDS) once it answers.
start_redis() {
    port_free "$1" || { echo "port $1 is busy" >&2; exit 1; }
    mkdir -p "$2"
    redis-server --port "$1" --bind 127.0.0.1 --protected-mode yes \
        --save '' --appendonly no --dir "$2" --daemonize no \
        --logfile "$2/redis.log" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_for_port "$1" "$REDIS_PID"
}
