#!/usr/bin/env bash
# Benchmarks side by side with the paper's Python pipeline. Creates a virtual environment
# with NumPy (and, for `training`, uses the torch wheel already downloaded by set-up) in the
# cache, idempotently.
#   deploy/bench.sh binning     binning + hashing + counting vs NumPy
#   deploy/bench.sh estimators  `worker estimate` kde/renyi/sliced vs their NumPy ports
#   deploy/bench.sh training    `worker run` vs the PyTorch + NumPy pipeline (installs torch
#                               2.13 with its CUDA dependencies into a venv: about 5 GB)
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
  estimators)
    cargo build --locked --release -p ibsweep-worker
    OMP_NUM_THREADS=${THREADS:-2} OPENBLAS_NUM_THREADS=${THREADS:-2} \
      "$VENV/bin/python" bench/estimators.py target/release/worker "${THREADS:-2}" ;;
  training)
    TORCH_VENV="$CACHE/bench-torch-venv"
    if ! "$TORCH_VENV/bin/python" -c 'import torch, numpy' 2>/dev/null; then
      python3 -m venv "$TORCH_VENV"
      "$TORCH_VENV/bin/python" -m pip install --quiet --progress-bar off 'torch==2.13.0' 'numpy>=2,<3'
    fi
    cargo build --locked --release -p ibsweep-worker
    "$TORCH_VENV/bin/python" bench/training.py target/release/worker "$CACHE/data" "${THREADS:-2}" ;;
  *) echo "usage: deploy/bench.sh binning|estimators|training" >&2; exit 2 ;;
esac
