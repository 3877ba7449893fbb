#!/usr/bin/env bash
# Builds and runs examples/embed, a crate that depends on llif with default features off, and
# checks what it must not have: torch-sys or any other C/C++ build in its dependency tree, and
# libtorch among the libraries its program loads.
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=examples/embed/Cargo.toml
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
tree="$(cargo tree --locked --manifest-path "$manifest" -e normal,build --prefix none)"
if grep -E '^(torch-sys|tch|libwebp-sys|cc) ' <<< "$tree"; then
    echo "check-embed: the embedding crate builds C/C++ or libtorch (above)" >&2
    exit 1
fi
cargo build --locked --manifest-path "$manifest"
exe="$CARGO_TARGET_DIR/debug/llif-embed-example"
if ldd "$exe" | grep -E 'libtorch|libc10|libstdc\+\+'; then
    echo "check-embed: the embedding program links libtorch or C++ (above)" >&2
    exit 1
fi
"$exe"
