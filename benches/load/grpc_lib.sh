# Shared by the gRPC vs binary REST benchmarks, grpc_hit.sh and
# grpc_uncached.sh (sourced after infer_lib.sh, not run).

# grpc_vs_rest RUN_GRPC RUN_REST FIGURE: ROUNDS rounds, the two sides in
# alternating order. RUN_* OUT measure one side into OUT; FIGURE OUT prints
# the number compared. Collects the figures in G and R and prints the
# ratio of each round.
grpc_vs_rest() {
    local round order who out
    G=() R=()
    for round in $(seq "$ROUNDS"); do
        echo "round $round"
        if [ $((round % 2)) = 1 ]; then order="grpc rest"; else order="rest grpc"; fi
        for who in $order; do
            out="$TMP/$who-$round.txt"
            if [ "$who" = grpc ]; then
                "$1" "$out"
                G+=("$("$3" "$out")")
            else
                "$2" "$out"
                R+=("$("$3" "$out")")
            fi
        done
        printf '  %-34s %s\n' "ratio grpc / rest" "$(ratio "${G[-1]}" "${R[-1]}")"
    done
}

# grpc_vs_rest_summary WHAT UNIT NOTE: the means of G and R and their ratio.
grpc_vs_rest_summary() {
    local g r
    g="$(mean "${G[@]}")" r="$(mean "${R[@]}")"
    echo "summary (mean of $ROUNDS rounds; $3)"
    printf '  %-24s mean %s %s\n' "grpc $1" "$g" "$2" "binary REST $1" "$r" "$2"
    printf '  %-24s %s   (target >= 1.0)\n' ratio "$(ratio "$g" "$r")"
}
