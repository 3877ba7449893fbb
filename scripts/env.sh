#!/usr/bin/env bash
# Runs a command with libtorch installed and LIBTORCH pointing at it (see setup-libtorch.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIBTORCH="$("$here/setup-libtorch.sh")"
export LIBTORCH
exec "$@"
