#!/usr/bin/env bash
# The long fault run behind docs/reliability.md: one sweep through 100 random worker
# SIGKILLs and 20 coordinator kill -9 + restarts (the test suite runs 20 + 5), checked row
# for row against a fault-free run of the same grid, plus the frozen-worker and
# coordinator-outage tests, then the store's disk filled five times in one job (issue #25).
# Real binaries, loopback only, bounded in count and time.
#
#   deploy/chaos.sh                      # 100 worker kills, 20 coordinator kills
#   IBSWEEP_CHAOS_WORKER_KILLS=300 deploy/chaos.sh
#   IBSWEEP_CHAOS_SEED=123 deploy/chaos.sh   # replay a schedule
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
deploy/setup.sh
export IBSWEEP_CHAOS_WORKER_KILLS="${IBSWEEP_CHAOS_WORKER_KILLS:-100}"
export IBSWEEP_CHAOS_COORDINATOR_KILLS="${IBSWEEP_CHAOS_COORDINATOR_KILLS:-20}"
echo "chaos: ${IBSWEEP_CHAOS_WORKER_KILLS} worker kills, ${IBSWEEP_CHAOS_COORDINATOR_KILLS} coordinator kills"
# The test drives the coordinator binary beside its own: build both.
cargo build --release --locked -p ibsweep-coordinator -p ibsweep-worker
log=target/chaos.log
mkdir -p target
start=$(date +%s)
if ! cargo test --release --locked -p ibsweep-worker --test chaos -- --nocapture --test-threads 1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "chaos: FAILED after $(( $(date +%s) - start )) s (full output in $log)"
    exit 1
fi
grep -E "^(chaos|test )|test result" "$log"
# The disk-full case: the store on a tmpfs filled five times in one job, for
# IBSWEEP_DISK_FULL_SECONDS each (default 60); needs root to mount, skipped otherwise.
export IBSWEEP_DISK_FULL_SECONDS="${IBSWEEP_DISK_FULL_SECONDS:-60}" IBSWEEP_DISK_FULL_TIMES="${IBSWEEP_DISK_FULL_TIMES:-5}"
echo "chaos: disk full ${IBSWEEP_DISK_FULL_TIMES} times for ${IBSWEEP_DISK_FULL_SECONDS} s"
if ! cargo test --release --locked -p ibsweep-worker --test storage_faults -- --nocapture >>"$log" 2>&1; then
    tail -n 40 "$log"
    echo "chaos: the disk-full case FAILED after $(( $(date +%s) - start )) s (full output in $log)"
    exit 1
fi
grep -E "^(disk full|SKIPPED)|test result" "$log" | tail -n 7
echo "chaos: finished in $(( $(date +%s) - start )) s (full output in $log)"
