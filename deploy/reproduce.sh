#!/usr/bin/env bash
# Reduced-scale reproduction of the paper's Figs. 4-8 through the coordinator and workers
# (docs/reproduction.md says what is reduced and what came out).
#
#   deploy/reproduce.sh            run the sweeps (resuming a previous run), export, report
#   deploy/reproduce.sh run        only run the sweeps and export docs/reproduction/results.csv
#   deploy/reproduce.sh report     only regenerate figures and tables from the stored CSVs
#                                  (results.csv, sweeps.csv, and reference.csv: the reference
#                                  code's published measures, see docs/reproduction.md)
#   deploy/reproduce.sh estimators         Figs. 4 and 7 again with KDE, Renyi and sliced MI
#                                          (examples/estimators/*.yaml) into docs/estimators/,
#                                          then their figures and docs/estimators.md's tables
#   deploy/reproduce.sh estimators-report  only those figures and tables, from the stored CSVs
#
# The store is durable and submission is idempotent, so an interrupted run continues where it
# stopped: kill it, start it again, finished jobs are kept and lost leases are re-run from their
# last checkpoint.
#   REPRO_STORE    the coordinator's data directory (default ~/.cache/ibsweep/reproduction/store)
#   REPRO_WORKERS  local workers, one libtorch thread each (default 2, one per core here)
#   REPRO_GRIDS    grids to run, in this order (default examples/repro-fig{6,7,8,5,4}-*.yaml)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODE=${1:-all}
WORKERS=${REPRO_WORKERS:-2}
case "$MODE" in
  estimators*)
    STATE=${REPRO_STORE:-${XDG_CACHE_HOME:-$HOME/.cache}/ibsweep/estimators/store}
    GRIDS=${REPRO_GRIDS:-"examples/estimators/fig7-pooling.yaml examples/estimators/fig4-width.yaml"}
    OUT=docs/estimators
    ;;
  *)
    STATE=${REPRO_STORE:-${XDG_CACHE_HOME:-$HOME/.cache}/ibsweep/reproduction/store}
    GRIDS=${REPRO_GRIDS:-"examples/repro-fig6-depth.yaml examples/repro-fig7-pooling.yaml examples/repro-fig8-fc.yaml examples/repro-fig5-kernel.yaml examples/repro-fig4-width.yaml"}
    OUT=docs/reproduction
    ;;
esac

run_sweeps() {
  deploy/setup.sh
  echo "reproduce: building release binaries" >&2
  cargo build --locked --release -p ibsweep-coordinator -p ibsweep-worker
  local bin=$PWD/target/release run
  run=$(dirname "$STATE")/run
  . deploy/local-sweep.sh
  local_sweep_start "$bin" "$STATE" "$run" "$WORKERS" repro
  local sweeps=() grid i
  mkdir -p "$OUT"
  echo "figure,grid,sweep_id" > "$OUT/sweeps.csv.new"
  for grid in $GRIDS; do
    sweeps+=("$(submit_sweep "$bin" "$grid")")
    echo "$(sed -n 's/^name: *//p' "$grid"),$grid,${sweeps[-1]}" >> "$OUT/sweeps.csv.new"
    echo "reproduce: $grid is sweep ${sweeps[-1]}" >&2
  done
  # The store holds only these sweeps, so watching all of them is watching ours.
  "$bin/coordinator" status --watch
  "$bin/coordinator" status
  local tmp
  tmp=$(mktemp -d)
  for i in "${!sweeps[@]}"; do "$bin/coordinator" results "${sweeps[$i]}" --out "$tmp/$i.csv"; done
  # One CSV, the coordinator's header once, the sweeps in the order run.
  { head -n 1 "$tmp/0.csv"; for i in "${!sweeps[@]}"; do tail -n +2 "$tmp/$i.csv"; done; } > "$OUT/results.csv"
  rm -rf "$tmp"
  mv "$OUT/sweeps.csv.new" "$OUT/sweeps.csv"
  echo "reproduce: $(($(wc -l < "$OUT/results.csv") - 1)) rows in $OUT/results.csv" >&2
  local_sweep_stop
}

case "$MODE" in
  all) run_sweeps ;;
  run) run_sweeps; exit 0 ;;
  report) ;;
  estimators) run_sweeps ;&
  estimators-report)
    # Figures into docs/estimators/<sweep>/, tables into docs/estimators.md, from the CSVs.
    exec cargo run --locked --release -q -p ibsweep-coordinator --example estimators_report
    ;;
  *) echo "usage: deploy/reproduce.sh [all|run|report|estimators|estimators-report]" >&2; exit 2 ;;
esac
# Figures into docs/reproduction/<sweep>/, tables into docs/reproduction.md, all from the CSVs.
cargo run --locked --release -q -p ibsweep-coordinator --example reproduction
