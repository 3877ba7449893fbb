#!/usr/bin/env bash
# The contract `make test` (and so CI) checks, cheapest first. Needs LIBTORCH (scripts/env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo; echo "== $*" >&2; }

step "format"
cargo fmt --all --check

step "module rules (STRUCTURE.md: who may use tch and constriction)"
scripts/check-structure.sh

step "clippy: library without libtorch, library with everything, the programs"
cargo clippy --locked -p llif --no-default-features --all-targets -- -D warnings
cargo clippy --locked -p llif --all-features --all-targets -- -D warnings
cargo clippy --locked -p llif-cli --all-targets -- -D warnings
cargo clippy --locked -p llif-train --all-targets -- -D warnings

step "tests: library without libtorch (pure Rust codec)"
cargo test --locked -p llif --no-default-features

step "tests: library with libtorch and the bench baselines"
cargo test --locked -p llif --all-features

step "tests: the llif program (runs the binary)"
cargo test --locked -p llif-cli

step "the llif program links no libtorch"
cargo build --locked -p llif-cli
if ldd target/debug/llif | grep -E 'libtorch|libc10'; then
    echo "the llif program links libtorch" >&2
    exit 1
fi

step "an embedding crate with default features off: no C++, no libtorch, round trip"
scripts/check-embed.sh

step "docs (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps -p llif --all-features
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps -p llif --no-default-features
echo "all checks passed" >&2
