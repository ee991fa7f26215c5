#!/usr/bin/env bash
# cargo-fuzz targets of the coordinator (docs/security.md "Fuzzing"), each run for
# FUZZ_RUNS executions (default 10^6) with libFuzzer's allocation budget: any single
# allocation over FUZZ_MALLOC_MB (default 256) or a process over 2 GiB is a failure.
#   deploy/fuzz.sh                 # grid, histogram, requests
#   FUZZ_RUNS=100000 deploy/fuzz.sh grid
# Needs the nightly toolchain (installed on this machine kind) and cargo-fuzz, which this
# script installs from crates.io when it is missing. The corpora under
# coordinator/fuzz/corpus/ are minimized after each run and committed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${FUZZ_RUNS:-1000000}
MALLOC_MB=${FUZZ_MALLOC_MB:-256}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(grid histogram requests)
rustup toolchain list | grep -q nightly || { echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cd coordinator/fuzz
mkdir -p corpus/grid corpus/histogram corpus/requests
cp -n ../../examples/*.yaml ../tests/bad-grids/*.yaml corpus/grid/ 2>/dev/null || true
for target in "${targets[@]}"; do
    # Inputs as large as each format needs: grids are small files, pieces up to 64 KiB here.
    case $target in grid) max_len=4096 ;; requests) max_len=8192 ;; *) max_len=65536 ;; esac
    # The request target builds a whole coordinator per input: AddressSanitizer makes it
    # 6x slower (411 vs 2,400 inputs/s), and our code has no `unsafe`, so it runs without
    # a sanitizer; libFuzzer's RSS limit still bounds its memory.
    sanitizer=address
    [[ $target == requests ]] && sanitizer=none
    log=../../target/fuzz-$target.log
    start=$(date +%s.%N)
    cargo +nightly fuzz build -O -s "$sanitizer" "$target" >/dev/null
    if ! cargo +nightly fuzz run -O -s "$sanitizer" "$target" "corpus/$target" -- \
        -runs="$RUNS" -malloc_limit_mb="$MALLOC_MB" -rss_limit_mb=2048 -max_len="$max_len" -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 30 "$log"
        echo "fuzz: $target FAILED (full output in $log; the crashing input is under coordinator/fuzz/artifacts/$target)"
        exit 1
    fi
    seconds=$(python3 -c "import time; print(f'{time.time() - $start:.0f}')")
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    peak=$(grep -oE 'stat::peak_rss_mb: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo "?")
    cargo +nightly fuzz cmin -O -s "$sanitizer" "$target" "corpus/$target" >/dev/null 2>&1 || true
    files=$(ls "corpus/$target" | wc -l)
        budget="no allocation over $MALLOC_MB MB"
    [[ $sanitizer == none ]] && budget="RSS under 2048 MB"
    echo "fuzz: $target ($sanitizer sanitizer): $execs executions in $seconds s, no crash, $budget, peak RSS $peak MB, coverage $cov edges, corpus $files files"
done
