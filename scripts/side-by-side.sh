#!/usr/bin/env bash
# Decode timing of models side by side on one machine: each model's file of the same image is
# decoded RUNS times in turn (interleaved, so drifts in machine load hit every model alike), and
# the fastest wall time of each is printed with the file size. Verifies every decode.
#
#   scripts/side-by-side.sh IMAGE RUNS MODEL...      MODEL: a built-in name or a .llifm file
set -euo pipefail
llif="${LLIF:-target/release/llif}"
image="$1"; runs="$2"; shift 2
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
extra=()
for m in "$@"; do [[ -f "$m" ]] && extra+=(-m "$m"); done
n=0
for m in "$@"; do
    "$llif" compress "$image" --model "$m" -o "$tmp/$n.llif" -q --force
    n=$((n + 1))
done
declare -a best
for ((r = 0; r < runs; r++)); do
    for ((k = 0; k < n; k++)); do
        start=$(date +%s.%N)
        "$llif" decompress "$tmp/$k.llif" -o "$tmp/$k.png" -q --force "${extra[@]}"
        t=$(echo "$(date +%s.%N) - $start" | bc)
        if [[ -z "${best[$k]:-}" ]] || (( $(echo "$t < ${best[$k]}" | bc) )); then best[$k]=$t; fi
    done
done
k=0
for m in "$@"; do
    cmp -s "$tmp/$k.png" "$tmp/0.png" || { echo "decoded pixels differ for $m" >&2; exit 1; }
    printf '%-40s %9d bytes  %.3f s (fastest of %d)\n' "$(basename "$m")" "$(stat -c %s "$tmp/$k.llif")" "${best[$k]}" "$runs"
    k=$((k + 1))
done
