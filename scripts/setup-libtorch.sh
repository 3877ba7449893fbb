#!/usr/bin/env bash
# Installs libtorch 2.11.0 (CPU use) from PyPI wheels into a cache outside the checkout and
# prints its path. Idempotent: a second run (or a second clone) reuses the cache.
#
#   LIBTORCH=/path/to/libtorch   use that install instead (e.g. a full CUDA libtorch); printed as is
#   LLIF_CACHE=/path             cache root (default: ${XDG_CACHE_HOME:-~/.cache}/llif)
#
# Why wheels: the torch wheel on PyPI is the CUDA build; we take only torch/lib and torch/include
# (~500 MB) and add the two small CUDA runtime libraries libtorch_cpu.so links against, instead of
# the 2.6 GB of CUDA wheels its metadata asks for.
set -euo pipefail

TORCH_VERSION=2.11.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85

if [[ -n "${LIBTORCH:-}" ]]; then
    echo "$LIBTORCH"
    exit 0
fi

cache="${LLIF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llif}"
dest="$cache/libtorch-$TORCH_VERSION"
if [[ -f "$dest/.complete" ]]; then
    echo "$dest"
    exit 0
fi

log() { echo "setup-libtorch: $*" >&2; }
command -v python3 >/dev/null || { log "python3 with pip is needed to fetch libtorch from PyPI"; exit 1; }
command -v unzip >/dev/null || python3 -c 'import zipfile' || { log "unzip or python3 zipfile needed"; exit 1; }

dl="$cache/downloads"
mkdir -p "$dl"
fetch() { # name==version, then platform tags
    local spec="$1"; shift
    local plats=()
    for p in "$@"; do plats+=(--platform "$p"); done
    log "downloading $spec"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "${plats[@]}" \
        --python-version 3.12 --implementation cp -d "$dl" "$spec" >&2
}
ls "$dl"/torch-$TORCH_VERSION-*.whl >/dev/null 2>&1 || fetch "torch==$TORCH_VERSION" manylinux_2_28_x86_64
ls "$dl"/nvidia_cuda_runtime-$CUDART_VERSION-*.whl >/dev/null 2>&1 || \
    fetch "nvidia-cuda-runtime==$CUDART_VERSION" manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_28_x86_64
ls "$dl"/nvidia_cuda_cupti-$CUPTI_VERSION-*.whl >/dev/null 2>&1 || \
    fetch "nvidia-cuda-cupti==$CUPTI_VERSION" manylinux_2_25_x86_64 manylinux_2_17_x86_64 manylinux_2_28_x86_64

tmp="$(mktemp -d "$cache/.unpack.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
log "unpacking into $dest"
python3 - "$tmp" "$dl" "$TORCH_VERSION" "$CUDART_VERSION" "$CUPTI_VERSION" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dl, tv, rv, cv = sys.argv[1:]
out = os.path.join(tmp, "libtorch")
os.makedirs(os.path.join(out, "lib"))
with zipfile.ZipFile(glob.glob(f"{dl}/torch-{tv}-*.whl")[0]) as z:
    for m in z.namelist():
        if m.startswith(("torch/lib/", "torch/include/")) and not m.endswith("/"):
            dst = os.path.join(out, m[len("torch/"):])
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with z.open(m) as src, open(dst, "wb") as f:
                shutil.copyfileobj(src, f)
for pat in (f"{dl}/nvidia_cuda_runtime-{rv}-*.whl", f"{dl}/nvidia_cuda_cupti-{cv}-*.whl"):
    with zipfile.ZipFile(glob.glob(pat)[0]) as z:
        for m in z.namelist():
            base = os.path.basename(m)
            if "/lib/" in m and ".so" in base:
                with z.open(m) as src, open(os.path.join(out, "lib", base), "wb") as f:
                    shutil.copyfileobj(src, f)
# torch-sys looks for this file to learn the version of a libtorch install.
with open(os.path.join(out, "build-version"), "w") as f:
    f.write(tv + "\n")
PY
# libtorch_cuda.so needs the full CUDA stack from the other wheels: leave it out, so the runtime
# finds no CUDA library here and runs on CPU (a CUDA libtorch can be given through LIBTORCH).
rm -f "$tmp/libtorch/lib/libtorch_cuda.so" "$tmp/libtorch/lib/libc10_cuda.so"
rm -rf "$dest"
mv "$tmp/libtorch" "$dest"
touch "$dest/.complete"
log "libtorch $TORCH_VERSION ready ($(du -sh "$dest" | cut -f1))"
echo "$dest"
