#!/usr/bin/env bash
# Runs the fuzz targets for a fixed number of inputs each, seeded with the golden files.
#   scripts/fuzz.sh [RUNS]         default 10,000,000 runs of `decode`, a tenth for the others
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The toolchain here is stable: RUSTC_BOOTSTRAP
# lets it take the sanitizer flags cargo-fuzz passes. Findings land in fuzz/artifacts/; each one
# becomes a named regression test and a seed in fuzz/seeds/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
runs="${1:-10000000}"
export RUSTC_BOOTSTRAP=1
corpus() { # target → a fresh corpus folder seeded with the golden files and kept seeds
    local dir="corpus/$1"
    mkdir -p "$dir"
    # The golden files of the small model and the stored ones (those of the shipped models
    # would only meet "unknown model" in the fuzz targets' model set).
    if [[ $1 == model ]]; then
        cp ../tests/golden/*.llifm "$dir/"
    else
        cp ../tests/golden/v1-pixelcnn-{gray,grayalpha,rgb,rgba}-*.llif ../tests/golden/v1-pixelcnn8a-*.llif \
            ../tests/golden/v1-flow-{gray,grayalpha,rgb,rgba}-*.llif ../tests/golden/v1-jointflow-*.llif ../tests/golden/archives/v1-archive-named-mixed.llif \
            ../tests/golden/v1-stored-*.llif "$dir/" 2>/dev/null || true
    fi
    [[ -d "seeds/$1" ]] && cp "seeds/$1"/* "$dir/" 2>/dev/null || true
    echo "$dir"
}
for target in header decode roundtrip model; do
    n=$runs
    [[ $target != decode ]] && n=$((runs / 10))
    echo "== fuzz $target: $n runs" >&2
    # What the fuzzer looks for are panics, aborts, hangs and wrong decodes. Without ASan and
    # compare tracing (which spent 70% of the time in the integer dot products), a decode input
    # takes 0.25 ms, not 1.5. The only unsafe code is the 8-bit engine's SIMD kernels (bounds
    # asserted before them); LLIF_FUZZ_SANITIZER=address checks them under ASan, slower.
    cargo fuzz run --release --sanitizer "${LLIF_FUZZ_SANITIZER:-none}" --no-trace-compares \
        "$target" "$(corpus "$target")" -- \
        -runs="$n" -max_len=4096 -timeout=30 -rss_limit_mb=4096 -print_final_stats=1
done
