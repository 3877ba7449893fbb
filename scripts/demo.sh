#!/usr/bin/env bash
# The main job on the embedded defaults: compress sample images with the default model and the
# fast one (the flow), decode, verify, and compare bits per sub-pixel with PNG and WebP (and
# JPEG XL when cjxl is installed).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
llif="$root/target/release/llif"
samples="$("$here/fetch-samples.sh")"
data="${LLIF_DATA:-$root/../shared/data}"
args=(--folder "$samples")
if [[ -f "$data/cifar10/test_batch.bin" ]]; then
    args+=(--cifar "$data/cifar10/test_batch.bin" --limit 100)
    echo "demo: sample images from $samples and the first 100 CIFAR-10 test images" >&2
else
    echo "demo: sample images from $samples (no CIFAR-10 data at $data)" >&2
fi
"$llif" bench "${args[@]}" --codecs png,webp,jpegxl,llif --model default,flow
# And the CLI round trip a user would do, checked byte for byte.
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$llif" compress "$samples/logo.png" -o "$tmp/logo.llif"
"$llif" info --verify "$tmp/logo.llif"
"$llif" decompress "$tmp/logo.llif" -o "$tmp/logo.png"
"$llif" bench --image "$tmp/logo.png" --codecs png --quiet >/dev/null
echo "demo: done"
