#!/usr/bin/env bash
# Would length bucketing pay for embeddings? In-process only (no server):
# `embed baseline` (benches/embed.rs) on the same model, tokenizer, threads
# and batch size as embed_http.sh, with different batch formation:
#
#   arrival       batches of 32 in file order (what the server's batcher does)
#   sort-window W sort each window of W texts by token count, then batch
#                 (a server reordering a backlog of W queued texts); 0: all
#   pad-multiple M  arrival order, each batch padded up to a multiple of M
#                 tokens (fewer distinct shapes, more padding)
#
# on two text sets: `narrow`, 12-18 words (the embed_http.sh texts), and
# `wide`, 4-120 words. Reports texts/s, real tokens/s (the fair measure:
# equal work per token) and padded/real tokens; every run waits for a quiet
# machine; ROUNDS rounds, each variant's value is the mean.
#
# Environment: ROUNDS (2), DURATION (10s), ORT_THREADS (2), MAX_BATCH (32),
# NARROW_VARIANTS, WIDE_VARIANTS (`;`-separated flag sets), SKIP_BUILD=1.
source "$(dirname "$0")/infer_lib.sh"
trap cleanup EXIT

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10s}"
SECS="${DURATION%s}"
ORT_THREADS="${ORT_THREADS:-2}"
MAX_BATCH="${MAX_BATCH:-32}"
NARROW_VARIANTS="${NARROW_VARIANTS:-;--sort-window 0;--sort-window 256;--sort-window 64;--pad-multiple 8;--pad-multiple 24}"
WIDE_VARIANTS="${WIDE_VARIANTS:-;--sort-window 0;--sort-window 256;--sort-window 64;--pad-multiple 16}"
HERE="$(cd "$(dirname "$0")" && pwd)"
MODEL_DIR="$ROOT/assets/models/minilm"

need python3
[ -f "$MODEL_DIR/model.onnx" ] || { echo "run scripts/setup first (no $MODEL_DIR)" >&2; exit 1; }
EMBED="$(bench_bin embed)"
TMP="$(new_tmpdir)"
python3 "$HERE/embed_texts.py" 20000 "$TMP/narrow.txt" --seed 1
python3 "$HERE/embed_texts.py" 5000 "$TMP/wide.txt" --seed 4 --min-words 4 --max-words 120

declare -A TPS RTPS WASTE
run_set() { # SET VARIANTS ROUND
    local set="$1" i v out
    IFS=';' read -r -a vs <<<"$2"
    for i in "${!vs[@]}"; do
        v="${vs[$i]}" out="$TMP/$set-$i-$3"
        # shellcheck disable=SC2086
        quiet_guarded to_file "$out" "$EMBED" baseline --texts "$TMP/$set.txt" --model-dir "$MODEL_DIR" \
            --batch "$MAX_BATCH" --threads "$ORT_THREADS" --secs "$SECS" $v
        [ "$3" = 1 ] && [ "$i" = 0 ] && echo "  $set: $(head -1 "$out" | sed 's/^# embed baseline: //')" &&
            echo "    $(grep '^# padded' "$out" | sed 's/^# //')"
        TPS[$set,$i]+=" $(field texts_per_s "$out")"
        RTPS[$set,$i]+=" $(field real_tokens_per_s "$out")"
        WASTE[$set,$i]="$(field padded_over_real "$out")"
        printf '    %-22s %8s texts/s %9s real tokens/s  padded/real %s %s\n' \
            "${v:-arrival}" "$(field texts_per_s "$out")" "$(field real_tokens_per_s "$out")" \
            "$(field padded_over_real "$out")" "$GUARD_NOTE"
    done
}

summary() { # SET VARIANTS
    local set="$1" i v base
    IFS=';' read -r -a vs <<<"$2"
    # shellcheck disable=SC2086
    base="$(mean ${RTPS[$set,0]})"
    for i in "${!vs[@]}"; do
        v="${vs[$i]}"
        # shellcheck disable=SC2086
        printf '  %-6s %-22s %8s texts/s %9s real tokens/s  padded/real %s  speed-up %s\n' \
            "$set" "${v:-arrival}" "$(mean ${TPS[$set,$i]})" "$(mean ${RTPS[$set,$i]})" \
            "${WASTE[$set,$i]}" "$(ratio "$(mean ${RTPS[$set,$i]})" "$base")"
    done
}

echo "# embed_padding: $(nproc) cores, in-process, batch $MAX_BATCH, threads $ORT_THREADS, $DURATION per run"
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    run_set narrow "$NARROW_VARIANTS" "$round"
    run_set wide "$WIDE_VARIANTS" "$round"
done
echo "summary (mean of $ROUNDS rounds; speed-up in real tokens/s against arrival order)"
summary narrow "$NARROW_VARIANTS"
summary wide "$WIDE_VARIANTS"
