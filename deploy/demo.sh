#!/usr/bin/env bash
# The demo sweep end to end on this machine: set-up, release build, a coordinator on a free
# local port with a fresh store, two workers (one libtorch thread each), examples/demo.yaml,
# live progress, a results summary and plots. Everything it starts is stopped on exit,
# Ctrl-C included. The coordinator runs with throwaway tokens (a user token for the commands,
# a worker token for the workers) in $DEMO_OUT, as a real deployment would.
#   DEMO_OUT   where results and plots go (default: ./demo-output)
#   DEMO_GRID  another grid to run (default: examples/demo.yaml)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${DEMO_OUT:-$PWD/demo-output}
GRID=${DEMO_GRID:-examples/demo.yaml}

deploy/setup.sh
echo "demo: building release binaries (the first build compiles libtorch bindings: ~5 minutes)" >&2
cargo build --locked --release -p ibsweep-coordinator -p ibsweep-worker
BIN=$PWD/target/release

rm -rf "$OUT" && mkdir -p "$OUT"
. deploy/local-sweep.sh
local_sweep_start "$BIN" "$OUT/store" "$OUT" 2 worker

START=$(date +%s)
SWEEP=$(submit_sweep "$BIN" "$GRID")
echo "demo: sweep $SWEEP submitted from $GRID; coordinator at $IBSWEEP_COORDINATOR" >&2
"$BIN/coordinator" status "$SWEEP" --watch
echo "demo: finished in $(( $(date +%s) - START )) s" >&2

"$BIN/coordinator" status "$SWEEP"
echo
echo "Last measured epoch, test split (bits):"
LAST=$("$BIN/coordinator" results "$SWEEP" --format json | python3 -c 'import json, sys; print(max(json.loads(l)["epoch"] for l in sys.stdin))')
"$BIN/coordinator" results "$SWEEP" --where split=test --where epoch="$LAST"
"$BIN/coordinator" results "$SWEEP" --out "$OUT/results.csv"
"$BIN/coordinator" plot "$SWEEP" --out "$OUT/plots" > /dev/null
echo
echo "demo: results in $OUT/results.csv, figures in $OUT/plots/:" >&2
ls "$OUT/plots" | sed 's/^/  /' >&2
