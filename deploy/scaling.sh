#!/usr/bin/env bash
# Worker-side scaling on real training (issue #13): the demo sweep (examples/demo.yaml, 4
# jobs) through a coordinator, three times on this machine, each with a fresh store:
#   1 worker x 1 thread (the serial baseline), 2 workers x 1 thread, 1 worker x 2 threads.
# Prints the wall times, the ratio of the two 2-core layouts and each one's parallel
# efficiency (serial time / (cores x wall time)). Results of the 1-thread layouts are also
# checked to be identical (same thread count, same rows).
#   deploy/scaling.sh            (SCALING_GRID=another.yaml to use another grid)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GRID=${SCALING_GRID:-examples/demo.yaml}
deploy/setup.sh >/dev/null
cargo build --locked --release -q -p ibsweep-coordinator -p ibsweep-worker
BIN=$PWD/target/release
W=$(mktemp -d /tmp/ibsweep-scaling.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'cleanup; rm -rf "$W"' EXIT

# run NAME WORKERS THREADS: wall seconds of the whole sweep; rows in $W/NAME.csv
run() {
  local name=$1 workers=$2 threads=$3
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  export IBSWEEP_COORDINATOR=http://127.0.0.1:$port
  "$BIN/coordinator" serve --listen "127.0.0.1:$port" --data-dir "$W/$name-store" 2> "$W/$name-coordinator.log" &
  PIDS+=($!)
  for _ in $(seq 50); do "$BIN/coordinator" status >/dev/null 2>&1 && break; sleep 0.2; done
  local sweep; sweep=$("$BIN/coordinator" submit "$GRID" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["sweep_id"])')
  local total; total=$("$BIN/coordinator" status "$sweep" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["sweeps"][0]["total"])')
  local start; start=$(date +%s.%N)
  for i in $(seq "$workers"); do
    "$BIN/worker" --threads "$threads" --name "$name-$i" 2> "$W/$name-$i.log" &
    PIDS+=($!)
  done
  until [[ $("$BIN/coordinator" status "$sweep" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["sweeps"][0]["done"])') -eq $total ]]; do
    sleep 0.5
  done
  local end; end=$(date +%s.%N)
  "$BIN/coordinator" results "$sweep" --format csv | sort > "$W/$name.csv"
  cleanup
  python3 -c "print(f'{$end - $start:.1f}')"
}

echo "scaling: $GRID, $(nproc) cores" >&2
serial=$(run serial 1 1)
echo "scaling: 1 worker x 1 thread: $serial s" >&2
two_workers=$(run two-workers 2 1)
echo "scaling: 2 workers x 1 thread: $two_workers s" >&2
two_threads=$(run two-threads 1 2)
echo "scaling: 1 worker x 2 threads: $two_threads s" >&2
same=no
cmp -s "$W/serial.csv" "$W/two-workers.csv" && same=yes
python3 - "$serial" "$two_workers" "$two_threads" "$same" <<'PY'
import sys
serial, workers, threads, same = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"{'layout':<26} {'wall s':>8} {'speed-up':>9} {'efficiency':>11}")
print(f"{'1 worker x 1 thread':<26} {serial:>8.1f} {1.0:>8.2f}x {'(baseline)':>11}")
for name, t in (("2 workers x 1 thread", workers), ("1 worker x 2 threads", threads)):
    print(f"{name:<26} {t:>8.1f} {serial / t:>8.2f}x {100 * serial / (2 * t):>10.0f}%")
print(f"wall-time ratio (1x2 / 2x1): {threads / workers:.2f}; rows of 1x1 and 2x1 identical: {same}")
PY
