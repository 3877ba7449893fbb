#!/usr/bin/env bash
# Fetches the demo's sample images from the scikit-image wheel on PyPI (CC0/public-domain sample
# data) into a cache outside the checkout, and prints the folder. Idempotent.
set -euo pipefail
cache="${LLIF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llif}"
dest="$cache/samples-v1"
names=(coffee.png camera.png coins.png logo.png microaneurysms.png)
if [[ -f "$dest/.complete" ]]; then echo "$dest"; exit 0; fi
mkdir -p "$cache/downloads" "$dest"
whl=$(ls "$cache"/downloads/scikit_image-0.25.2-*.whl 2>/dev/null | head -1 || true)
if [[ -z "$whl" ]]; then
    echo "fetch-samples: downloading scikit-image 0.25.2 (sample images only are kept)" >&2
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$cache/downloads" scikit-image==0.25.2 >&2
    whl=$(ls "$cache"/downloads/scikit_image-0.25.2-*.whl | head -1)
fi
python3 - "$whl" "$dest" "${names[@]}" <<'PY'
import os, sys, zipfile
whl, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(whl) as z:
    for n in names:
        with z.open("skimage/data/" + n) as src, open(os.path.join(dest, n), "wb") as f:
            f.write(src.read())
PY
touch "$dest/.complete"
echo "$dest"
