#!/usr/bin/env bash
# Finds where an encoder and a decoder part: runs both with LLIF_TRACE and prints the first
# coded symbol whose distribution or value differs (see DESYNC.md).
#   scripts/first-desync.sh TRACE_PREFIX        compare TRACE_PREFIX.enc with TRACE_PREFIX.dec
set -euo pipefail
prefix="${1:?usage: first-desync.sh TRACE_PREFIX (after LLIF_TRACE=TRACE_PREFIX runs)}"
enc="$prefix.enc" dec="$prefix.dec"
[[ -f "$enc" && -f "$dec" ]] || { echo "need $enc and $dec" >&2; exit 2; }
line="$(cmp "$enc" "$dec" 2>/dev/null | sed -n 's/.* line \([0-9]*\).*/\1/p' || true)"
if [[ -z "$line" ]]; then
    if cmp -s "$enc" "$dec"; then echo "no desync: $(wc -l < "$enc") symbols agree"; exit 0; fi
    echo "one trace is a prefix of the other: the shorter side stopped at line $(( $(wc -l < "$enc") < $(wc -l < "$dec") ? $(wc -l < "$enc") : $(wc -l < "$dec") ))"
    exit 1
fi
echo "first desync at coded symbol $((line - 1)):"
echo "  encoder: $(sed -n "${line}p" "$enc")"
echo "  decoder: $(sed -n "${line}p" "$dec")"
[[ $line -gt 1 ]] && echo "  last agreement: $(sed -n "$((line - 1))p" "$enc")"
exit 1
