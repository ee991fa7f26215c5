#!/usr/bin/env bash
# Benchmarks side by side with the paper's Python pipeline. Creates a virtual environment
# with NumPy (and, for `training`, uses the torch wheel already downloaded by set-up) in the
# cache, idempotently.
#   deploy/bench.sh binning     binning + hashing + counting vs NumPy
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CACHE=${IBSWEEP_CACHE:-${HOME:-/root}/.cache/ibsweep}
VENV="$CACHE/bench-venv"
deploy/setup.sh
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import numpy' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --progress-bar off 'numpy>=2,<3'
fi
export IBSWEEP_BENCH_PYTHON="$VENV/bin/python"
case "${1:-binning}" in
  binning) cargo bench --locked -p ibsweep-shared --bench binning ;;
  *) echo "usage: deploy/bench.sh binning" >&2; exit 2 ;;
esac
