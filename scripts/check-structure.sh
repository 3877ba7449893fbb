#!/usr/bin/env bash
# STRUCTURE.md's "may use" rules, checked: tch (libtorch) only in training code and its
# evaluators, constriction only in the coding layer. Prints each breach and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
# path prefix allowed to name the crate, per crate
check() {
    local crate="$1"; shift
    local hits
    hits="$(grep -rnE "(\\b|::)${crate}::|extern crate ${crate}\\b|use ${crate}\\b" src cli/src train/src benches examples --include='*.rs' || true)"
    while IFS= read -r hit; do
        [[ -z "$hit" ]] && continue
        local file="${hit%%:*}" ok=0
        for allowed in "$@"; do
            [[ "$file" == $allowed ]] && ok=1
        done
        if [[ $ok -eq 0 ]]; then
            echo "check-structure: $crate used outside its modules: $hit" >&2
            status=1
        fi
    done <<< "$hits"
}
check tch 'src/pixelcnn/float_model.rs' 'src/pixelcnn/train.rs' 'src/flow/float_model.rs' \
    'src/flow/train.rs' 'src/vae/float_model.rs' 'src/vae/train.rs' 'src/intnet/tch_eval.rs' \
    'src/runtime.rs' 'src/error.rs' 'examples/gemm_speed.rs'
check torch_sys 'src/runtime.rs'
check constriction 'src/coding/*'
# The pure-Rust programs and modules must not even name the torch feature's items.
if grep -rnE "float_model|tch_eval|runtime::" cli/src --include='*.rs'; then
    echo "check-structure: the llif program uses libtorch code" >&2
    status=1
fi
if [[ $status -eq 0 ]]; then
    echo "check-structure: tch only in training/evaluator code, constriction only in src/coding/" >&2
fi
exit $status
