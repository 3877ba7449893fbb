# llif: two commands on a fresh machine.
#   make demo   build, then compress/decompress/verify sample images against PNG, WebP, JPEG XL
#   make test   the whole contract CI checks: fmt, the "may use" rules, clippy and tests of the
#               library with and without libtorch, the programs, docs, an embedding crate
# Both install what they need: libtorch 2.11.0 (CPU) from PyPI wheels into ~/.cache/llif (or
# $LLIF_CACHE; set LIBTORCH to use another install), and best-effort cjxl and tcmalloc.

SHELL := bash
ENV := scripts/env.sh

.PHONY: all build demo test bench-cifar bench-photos setup doc clean

all: build

setup:
	@scripts/setup-system.sh
	@scripts/setup-libtorch.sh >/dev/null

# Two cargo runs on purpose: built together, cargo would unify llif's features and link the
# `llif` program against libtorch too.
build: setup
	cargo build --release --locked -p llif-cli
	$(ENV) cargo build --release --locked -p llif-train

demo: build
	scripts/demo.sh

test: setup
	$(ENV) scripts/test.sh

doc: setup
	$(ENV) cargo doc --no-deps --locked -p llif --all-features

# The figures quoted in README.md and models/README.md (need ../shared/data or LLIF_DATA).
DATA ?= ../shared/data
bench-cifar: build
	target/release/llif bench --cifar $(DATA)/cifar10/test_batch.bin --json bench-cifar.json

bench-photos: build
	target/release/llif bench --folder $(DATA)/photos/test --json bench-photos.json

clean:
	cargo clean
