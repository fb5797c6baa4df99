# Shared helpers of the inference and embedding load benchmarks (sourced,
# not run): infer_mlp.sh, infer_hit.sh, embed_http.sh, embed_zipf.sh.
#
# Builds on lib.sh (process and temp-dir cleanup, wrk parsing, ratio/mean).
# Differences:
# - `quiet_guarded` waits until *foreign* processes (everything that is not
#   a kernel thread or a descendant of this script: builds, tests, other
#   benchmarks' servers and load generators) together use less than
#   FOREIGN_CPU (10) percent of one core, sampled every 0.5 s, and repeats
#   a measurement during which they used more (up to ATTEMPTS, 4, times).
# - The in-process baselines (benches/infer.rs, benches/embed.rs) are found
#   as bench targets (`cargo bench --no-run`), else as the temporary
#   examples tmp_bench_infer / tmp_bench_embed; INFER_BIN / EMBED_BIN
#   override.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# INFERCACHE_BIN_DIR: take `infercache` from there instead of target/release
# (pin one binary while others rebuild the tree).
RELEASE="${INFERCACHE_BIN_DIR:-$RELEASE}"
SELF_PID=$$
# "PID TICKS NAME" (user + system CPU ticks so far) of every process that
# is neither a kernel thread nor a descendant of this script.
foreign_snapshot() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v self="$SELF_PID" '
    {
        i = match($0, /\) [A-Z] /)
        if (!i) next
        open = index($0, "(")
        split(substr($0, i + 2), f, " ")
        pid = $1; ppid[pid] = f[2]; ticks[pid] = f[12] + f[13]
        name[pid] = substr($0, open + 1, i - open - 1)
    }
    END {
        for (p in ticks) {
            if (p == 2 || ppid[p] == 2) continue
            q = p; mine = 0
            for (d = 0; d < 64 && q > 1; d++) { if (q == self) { mine = 1; break }; q = ppid[q] }
            if (!mine) print p, ticks[p], name[p]
        }
    }'
}

# FOREIGN_CPU: how much CPU (percent of one core) all foreign processes
# together may use while a measurement counts as quiet.
FOREIGN_CPU="${FOREIGN_CPU:-10}"

# Prints the busiest foreign process and the foreign total ("PID NAME: total
# N% of a core") when foreign processes used more than FOREIGN_CPU percent
# of a core over the last 0.5 s; returns 1 when quiet.
foreign_busy() {
    local before after
    before="$(foreign_snapshot)"
    sleep 0.5
    after="$(foreign_snapshot)"
    awk -v limit="$FOREIGN_CPU" -v hz="$(getconf CLK_TCK)" '
        NR == FNR { t[$1] = $2; next }
        ($1 in t) {
            d = $2 - t[$1]; total += d
            if (d > top) { top = d; who = $1 " " $3 }
        }
        END {
            pct = 100 * total / hz / 0.5
            if (pct > limit) { printf "%s: total %.0f%% of a core\n", who, pct; exit 0 }
            exit 1
        }' <(echo "$before") <(echo "$after")
}

QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-900}"

wait_all_quiet() {
    [ "${QUIET:-1}" = 1 ] || return 0
    local waited=0 who
    while who="$(foreign_busy)"; do
        [ "$waited" = 0 ] && echo "  (waiting for foreign load to finish: $who)" >&2
        sleep 3
        waited=$((waited + 3))
        if [ "$waited" -ge "$QUIET_MAX_WAIT" ]; then
            echo "  (still busy after ${QUIET_MAX_WAIT}s: $who; measuring anyway)" >&2
            return 0
        fi
    done
    [ "$waited" = 0 ] || sleep 2
}

# quiet_guarded CMD...: run CMD on a quiet machine, repeat (up to ATTEMPTS, 4)
# if foreign load appeared meanwhile. Sets GUARD_NOTE to "" or "(noisy)".
quiet_guarded() {
    local attempt flag sampler
    flag="$(mktemp /tmp/infercache-bench-busy.XXXXXX)"
    GUARD_NOTE=""
    for attempt in $(seq "${ATTEMPTS:-4}"); do
        wait_all_quiet
        : >"$flag"
        if [ "${QUIET:-1}" = 1 ]; then
            (while :; do
                who="$(foreign_busy)" && echo "$who" >>"$flag"
            done) &
            sampler=$!
        fi
        "$@"
        if [ "${QUIET:-1}" = 1 ]; then
            kill "$sampler" 2>/dev/null || true
            wait "$sampler" 2>/dev/null || true
        fi
        [ -s "$flag" ] || break
        if [ "$attempt" = "${ATTEMPTS:-4}" ]; then
            echo "  (foreign load during every attempt: $(head -1 "$flag"); keeping the last)" >&2
            GUARD_NOTE="(noisy)"
            break
        fi
        echo "  (foreign load during this measurement: $(head -1 "$flag"); repeating it)" >&2
    done
    rm -f "$flag"
}

# bench_bin NAME: path of the built baseline NAME (infer | embed).
bench_bin() {
    local name="$1" var exe
    var="$(echo "$name" | tr a-z A-Z)_BIN"
    if [ -n "${!var:-}" ]; then
        echo "${!var}"
        return
    fi
    exe="$(cd "$ROOT" && cargo bench --features testing --bench "$name" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["executable"])' | tail -1 || true)"
    if [ -z "$exe" ] && [ -f "$ROOT/examples/tmp_bench_$name.rs" ]; then
        (cd "$ROOT" && cargo build --release --example "tmp_bench_$name" >&2)
        exe="$RELEASE/examples/tmp_bench_$name"
    fi
    [ -n "$exe" ] || {
        echo "cannot build the $name baseline: add [[bench]] name = \"$name\" harness = false" >&2
        exit 1
    }
    echo "$exe"
}

build_server() {
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        (cd "$ROOT" && cargo build --release --bin infercache >&2)
    fi
}

# metric NAME_WITH_LABELS URL: one value from /metrics (0 if absent).
metric() {
    curl -sS "$2/metrics" | awk -v m="$1" '$1 == m { v = $2 } END { print v + 0 }'
}

# RESULT-line field: field KEY FILE
field() { awk -v k="$1" '/^RESULT/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$2"; }

# wrk's total request count.
wrk_requests() { awk '/requests in/ { print $1 }' "$1"; }

div() { awk -v a="$1" -v b="$2" -v f="${3:-%.1f}" 'BEGIN { if (b > 0) printf f, a / b; else print "n/a" }'; }

# minilm_config FILE MAX_DELAY_MS THREADS [INSTANCES]: a server config
# serving assets/models/minilm as `minilm`, batches of up to 32 texts.
minilm_config() {
    local dir="$ROOT/assets/models/minilm"
    cat >"$1" <<EOF
[[model]]
name = "minilm"
path = "$dir/model.onnx"
tokenizer = "$dir/tokenizer.json"
max_batch = 32
max_batch_tokens = 8192
max_delay_ms = $2
threads = $3
instances = ${4:-1}
EOF
}
