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
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export IBSWEEP_COORDINATOR="http://127.0.0.1:$PORT"
# Throwaway tokens: `serve` and the commands read IBSWEEP_TOKEN_FILE, `serve` and the workers
# IBSWEEP_WORKER_TOKEN_FILE.
(umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$OUT/user.token")
(umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$OUT/worker.token")
export IBSWEEP_TOKEN_FILE="$OUT/user.token" IBSWEEP_WORKER_TOKEN_FILE="$OUT/worker.token"
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'echo "demo: interrupted" >&2; exit 130' INT TERM

"$BIN/coordinator" serve --listen "127.0.0.1:$PORT" --data-dir "$OUT/store" 2> "$OUT/coordinator.log" &
PIDS+=($!)
for _ in $(seq 50); do "$BIN/coordinator" status >/dev/null 2>&1 && break; sleep 0.2; done
for name in worker-1 worker-2; do
  "$BIN/worker" --threads 1 --name "$name" 2> "$OUT/$name.log" &
  PIDS+=($!)
done

START=$(date +%s)
SWEEP=$("$BIN/coordinator" submit "$GRID" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["sweep_id"])')
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
