# llif: two commands on a fresh machine.
#   make demo   build, then compress/decompress/verify sample images against PNG, WebP, JPEG XL
#   make test   build and run the test suite
# Both install what they need: libtorch 2.11.0 (CPU) from PyPI wheels into ~/.cache/llif (or
# $LLIF_CACHE; set LIBTORCH to use another install), and best-effort cjxl and tcmalloc.

SHELL := bash
ENV := scripts/env.sh

.PHONY: all build demo test bench-cifar bench-photos setup doc clean

all: build

setup:
	@scripts/setup-system.sh
	@scripts/setup-libtorch.sh >/dev/null

build: setup
	$(ENV) cargo build --release --locked

demo: build
	scripts/demo.sh

test: setup
	$(ENV) cargo test --locked

doc: setup
	$(ENV) cargo doc --no-deps --locked

# The figures quoted in README.md and models/README.md (need ../shared/data or LLIF_DATA).
DATA ?= ../shared/data
bench-cifar: build
	target/release/llif bench --cifar $(DATA)/cifar10/test_batch.bin --json bench-cifar.json

bench-photos: build
	target/release/llif bench --folder $(DATA)/photos/test --json bench-photos.json

clean:
	cargo clean
