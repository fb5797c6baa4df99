#!/usr/bin/env bash
# Uncached embeddings over HTTP vs a direct in-process loop, plus padding.
#
# Texts: NTEXTS distinct synthetic sentences of 12-18 words (~15 words,
# ~18 MiniLM tokens; embed_texts.py, seed 1); warm-up texts from seed 2, so
# the measured texts are never cached.
#
# Server: infercache with all-MiniLM-L6-v2 int8 (assets from scripts/setup)
# configured like examples/minilm.toml (max_batch 32, max_delay_ms,
# threads, instances below). Load: `embed load` (benches/embed.rs), CONCURRENCY
# keep-alive connections, one text per POST /v1/embeddings, base64 vectors,
# for DURATION; every answer must be X-Cache: miss.
#
# Baseline: `embed baseline`: same tokenizer, same model, same intra-op
# threads, batches of 32 padded to their longest text, mean pooling, for
# DURATION, one thread. With SORTED=1 also the baseline with ideal length
# bucketing (all texts sorted by token count, cut into batches, batches
# run in shuffled order: `--sort-window 0`); with PYTHON=1 (default when .venv
# exists) also the Python onnxruntime loop (embed_python.py), for scale;
# with SMALL_BATCH=N (default 16) also the baseline with batches of N, to
# see what the server's smaller dynamic batches cost by themselves.
#
# Rounds alternate the order; every run waits for a quiet machine.
#
# Environment: ROUNDS (2), DURATION (15s), CONCURRENCY (32), NTEXTS (30000),
# MAX_DELAY_MS (2), ORT_THREADS (2), INSTANCES (1), MAX_BATCH (32),
# PORT (17813), SORTED (1), PYTHON (1 if .venv), FORMAT (base64),
# SKIP_BUILD=1, DEFAULTS=1 (the server's model table names only the model
# and its tokenizer, every other setting at its default; the baseline keeps
# ORT_THREADS and MAX_BATCH), SERVER_EXTRA (more lines for the server's
# model table, e.g. 'nice = 0').
source "$(dirname "$0")/infer_lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-15s}"
SECS="${DURATION%s}"
CONCURRENCY="${CONCURRENCY:-32}"
NTEXTS="${NTEXTS:-30000}"
MAX_DELAY_MS="${MAX_DELAY_MS:-2}"
ORT_THREADS="${ORT_THREADS:-2}"
INSTANCES="${INSTANCES:-1}"
MAX_BATCH="${MAX_BATCH:-32}"
PORT="${PORT:-17813}"
SORTED="${SORTED:-1}"
SMALL_BATCH="${SMALL_BATCH:-16}"
FORMAT="${FORMAT:-base64}"
PY="$ROOT/.venv/bin/python"
if [ -x "$PY" ]; then PYTHON="${PYTHON:-1}"; else PYTHON=0; fi
HERE="$(cd "$(dirname "$0")" && pwd)"
MODEL_DIR="$ROOT/assets/models/minilm"

need curl python3
[ -f "$MODEL_DIR/model.onnx" ] || { echo "run scripts/setup first (no $MODEL_DIR)" >&2; exit 1; }
build_server
EMBED="$(bench_bin embed)"
TMP="$(new_tmpdir)"
python3 "$HERE/embed_texts.py" "$NTEXTS" "$TMP/texts.txt" --seed 1
python3 "$HERE/embed_texts.py" 300 "$TMP/warm.txt" --seed 2
cat >"$TMP/config.toml" <<EOF
[[model]]
name = "minilm"
path = "$MODEL_DIR/model.onnx"
tokenizer = "$MODEL_DIR/tokenizer.json"
EOF
[ "${DEFAULTS:-0}" = 1 ] || cat >>"$TMP/config.toml" <<EOF
max_tokens = 256
pooling = "mean"
normalize = true
max_batch = $MAX_BATCH
max_batch_tokens = 8192
max_delay_ms = $MAX_DELAY_MS
threads = $ORT_THREADS
instances = $INSTANCES
EOF
[ -z "${SERVER_EXTRA:-}" ] || echo "$SERVER_EXTRA" >>"$TMP/config.toml"

measure_server() { # OUT_PREFIX
    local dir="$1.d" url="http://127.0.0.1:$PORT"
    rm -rf "$dir"
    mkdir -p "$dir"
    start_infercache "$PORT" "$dir" --config "$TMP/config.toml"
    "$EMBED" load --url "$url" --texts "$TMP/warm.txt" --concurrency "$CONCURRENCY" \
        --format "$FORMAT" >/dev/null
    local runs0 rows0 secs0
    runs0="$(metric 'infercache_model_runs_total{model="minilm"}' "$url")"
    rows0="$(metric 'infercache_model_rows_total{model="minilm"}' "$url")"
    secs0="$(metric 'infercache_model_run_seconds_sum{model="minilm"}' "$url")"
    "$EMBED" load --url "$url" --texts "$TMP/texts.txt" --concurrency "$CONCURRENCY" \
        --format "$FORMAT" --secs-cap "$SECS" >"$1.txt"
    {
        echo "runs $(($(metric 'infercache_model_runs_total{model="minilm"}' "$url") - runs0))"
        echo "rows $(($(metric 'infercache_model_rows_total{model="minilm"}' "$url") - rows0))"
        echo "run_seconds $(awk -v a="$(metric 'infercache_model_run_seconds_sum{model="minilm"}' "$url")" -v b="$secs0" 'BEGIN { print a - b }')"
    } >"$1.metrics"
    curl -sS "$url/metrics" | grep '^infercache_batch_size_bucket{.*minilm' >"$1.buckets"
    kill "$IC_PID"
    wait "$IC_PID" 2>/dev/null || true
}

SRV=() BASE=() SORT=() PYF=() SMALL=()
run_server() { # ROUND
    local out="$TMP/srv-$1"
    quiet_guarded measure_server "$out"
    local errors miss requests runs rows
    errors="$(field errors "$out.txt")" miss="$(field miss "$out.txt")"
    requests="$(field requests "$out.txt")"
    [ "$errors" = 0 ] || { echo "server: $errors errors" >&2; cat "$out.txt" >&2; exit 1; }
    [ "$miss" = "$requests" ] || { echo "server: only $miss of $requests were misses" >&2; exit 1; }
    runs="$(awk '$1 == "runs" { print $2 }' "$out.metrics")"
    rows="$(awk '$1 == "rows" { print $2 }' "$out.metrics")"
    SRV+=("$(field texts_per_s "$out.txt")")
    printf '  %-40s %8s texts/s  p50 %7s ms  p99 %7s ms  mean batch %5s  %s ms/run  (%s texts, all misses) %s\n' \
        "server, $CONCURRENCY clients" "${SRV[-1]}" "$(field p50_ms "$out.txt")" "$(field p99_ms "$out.txt")" \
        "$(div "$rows" "$runs")" "$(div "$(awk '$1 == "run_seconds" { print $2 * 1000 }' "$out.metrics")" "$runs")" \
        "$requests" "$GUARD_NOTE"
    MEAN_BATCH="$(div "$rows" "$runs")"
}

run_baseline() { # ROUND [sorted]
    local out="$TMP/base-$1${2:-}"
    quiet_guarded to_file "$out" "$EMBED" baseline --texts "$TMP/texts.txt" --model-dir "$MODEL_DIR" \
        --batch "$MAX_BATCH" --threads "$ORT_THREADS" --secs "$SECS" ${2:+--sort-window 0}
    local v
    v="$(field texts_per_s "$out")"
    if [ -n "${2:-}" ]; then SORT+=("$v"); else BASE+=("$v"); fi
    printf '  %-40s %8s texts/s  padded/real tokens %s %s\n' \
        "in-process${2:+ sorted by length}" "$v" "$(field padded_over_real "$out")" "$GUARD_NOTE"
    [ -n "${2:-}" ] || PADSIM="$(grep '^# padded' "$out")"
    [ -n "${2:-}" ] || TEXTINFO="$(head -1 "$out")"
}

run_small() { # ROUND
    local out="$TMP/small-$1"
    quiet_guarded to_file "$out" "$EMBED" baseline --texts "$TMP/texts.txt" --model-dir "$MODEL_DIR" \
        --batch "$SMALL_BATCH" --threads "$ORT_THREADS" --secs "$SECS"
    SMALL+=("$(field texts_per_s "$out")")
    printf '  %-40s %8s texts/s  padded/real tokens %s %s\n' \
        "in-process, batches of $SMALL_BATCH" "${SMALL[-1]}" "$(field padded_over_real "$out")" "$GUARD_NOTE"
}

run_python() { # ROUND
    local out="$TMP/py-$1"
    quiet_guarded to_file "$out" "$PY" "$HERE/embed_python.py" --texts "$TMP/texts.txt" \
        --model-dir "$MODEL_DIR" --threads "$ORT_THREADS" --batch "$MAX_BATCH" --secs "$SECS"
    PYF+=("$(field texts_per_s "$out")")
    printf '  %-40s %8s texts/s %s\n' "python onnxruntime (scale only)" "${PYF[-1]}" "$GUARD_NOTE"
}

SETTINGS="max_batch $MAX_BATCH, max_delay_ms $MAX_DELAY_MS, threads $ORT_THREADS, instances $INSTANCES"
[ "${DEFAULTS:-0}" = 1 ] && SETTINGS="default model settings (baseline: batches of $MAX_BATCH, threads $ORT_THREADS)"
echo "# embed_http: $(nproc) cores, $CONCURRENCY clients, $DURATION per run, $SETTINGS${SERVER_EXTRA:+, $SERVER_EXTRA}," \
    "encoding_format $FORMAT"
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    if [ $((round % 2)) = 1 ]; then
        run_baseline "$round"
        run_server "$round"
    else
        run_server "$round"
        run_baseline "$round"
    fi
    [ "$SORTED" = 1 ] && run_baseline "$round" sorted
    [ "$SMALL_BATCH" != 0 ] && run_small "$round"
    [ "$PYTHON" = 1 ] && run_python "$round"
    echo "  ratio server / in-process              $(ratio "${SRV[-1]}" "${BASE[-1]}")"
done
srv="$(mean "${SRV[@]}")" base="$(mean "${BASE[@]}")"
echo "summary (mean of $ROUNDS rounds)"
echo "  texts: ${TEXTINFO#\# embed baseline: }"
echo "  server        $srv texts/s (mean batch in the last round: $MEAN_BATCH)"
echo "  in-process    $base texts/s"
echo "  ratio         $(ratio "$srv" "$base")   (target >= 0.9)"
[ "$SORTED" = 1 ] && echo "  in-process sorted by length: $(mean "${SORT[@]}") texts/s, $(ratio "$(mean "${SORT[@]}")" "$base") x unsorted"
[ "$SMALL_BATCH" != 0 ] && echo "  in-process batches of $SMALL_BATCH: $(mean "${SMALL[@]}") texts/s, $(ratio "$(mean "${SMALL[@]}")" "$base") x batches of $MAX_BATCH"
[ "$PYTHON" = 1 ] && echo "  python onnxruntime: $(mean "${PYF[@]}") texts/s, $(ratio "$(mean "${PYF[@]}")" "$base") x the Rust in-process loop"
echo "  $PADSIM"
echo "  server batch sizes (last round, cumulative buckets):"
sed 's/^/    /' "$TMP/srv-$ROUNDS.buckets"
