#!/usr/bin/env bash
# Best-effort system packages: cjxl/djxl (JPEG XL column of the bench) and tcmalloc (about 2x
# faster CPU training). Neither is required: without them the bench skips JPEG XL with a note
# and training runs with the system allocator. Installs only as root with apt-get; otherwise
# says what to install.
set -uo pipefail
want=()
command -v cjxl >/dev/null 2>&1 || want+=(libjxl-tools)
ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1 || want+=(libtcmalloc-minimal4)
[[ ${#want[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup-system: installing ${want[*]}" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}") >/dev/null 2>&1 \
        || echo "setup-system: could not install ${want[*]} (continuing without)" >&2
else
    echo "setup-system: optional packages missing: ${want[*]} (install them for the JPEG XL bench column and faster training)" >&2
fi
exit 0
