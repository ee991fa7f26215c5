#!/usr/bin/env bash
# A real multi-host test on one machine: three network namespaces (a coordinator and two
# workers) joined by a bridge in a fourth, addressed by their own IPs. A sweep runs to
# completion; then the link of the worker holding a job is taken down mid-job, and the job
# must be re-leased to the other worker and complete exactly once. Traffic stays inside
# the namespaces made here; everything is removed on exit, also on failure.
#   deploy/multihost-test.sh BIN_DIR     (where `coordinator` and `worker` are)
# Exit 77: namespaces cannot be made here (not root, no iproute2): skipped.
set -euo pipefail
BIN=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
command -v ip >/dev/null || { echo "multihost: skipped: iproute2 (ip) is missing"; exit 77; }
p=ibs$$
sub=10.231.$(( $$ % 200 + 20 ))
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    for ns in c w1 w2 sw; do ip netns del "$p-$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
if ! ip netns add "$p-sw" 2>/dev/null; then
    echo "multihost: skipped: cannot create network namespaces here (needs root and netns support)"
    exit 77
fi
ip -n "$p-sw" link add br0 type bridge
ip -n "$p-sw" link set br0 up
n=1
for host in c w1 w2; do
    ip netns add "$p-$host"
    ip link add "$p-$host" type veth peer name "eth0" netns "$p-$host"
    ip link set "$p-$host" netns "$p-sw"
    ip -n "$p-sw" link set "$p-$host" master br0 up
    ip -n "$p-$host" addr add "$sub.$n/24" dev eth0
    ip -n "$p-$host" link set eth0 up
    ip -n "$p-$host" link set lo up
    n=$((n + 1))
done
coordinator_ip=$sub.1
url=http://$coordinator_ip:50051
on() { local host=$1; shift; ip netns exec "$p-$host" "$@"; }
# In the background, with the binary's own PID recorded (ip netns exec execs it), so
# clean-up kills the process itself. Output: $work/NAME.log.
spawn() { local host=$1 log=$2; shift 2; ip netns exec "$p-$host" "$@" 2> "$work/$log.log" & pids+=($!); }
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/user.token"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/worker.token"
client() { on c "$BIN/coordinator" --coordinator "$url" --token-file "$work/user.token" "$@"; }
wait_until() { # seconds description command...
    local limit=$1 what=$2; shift 2
    for _ in $(seq $((limit * 5))); do "$@" && return 0; sleep 0.2; done
    echo "multihost: FAILED waiting for $what"; tail -n 20 "$work"/*.log; exit 1
}
status_is() { # field value
    client status "$sweep" --json 2>/dev/null | python3 -c "import json,sys; s=json.load(sys.stdin)['sweeps'][0]; sys.exit(0 if s['$1'] == $2 else 1)"
}
spawn c coordinator "$BIN/coordinator" serve --listen "$coordinator_ip:50051" --lease-ttl 3 --data-dir "$work/store" \
    --token-file "$work/user.token" --worker-token-file "$work/worker.token"
cat > "$work/grid.yaml" <<GRID
name: multihost
parameters:
  dataset: {values: [mnist, fashion-mnist]}
  width: {value: 2}
  depth: {value: 2}
  kernel: {value: 3}
  epochs: {value: 20}
measure: {epochs: "log:4", splits: [test], bin_sizes: [0.67]}
train: {train_size: 2000, test_size: 500, batch_size: 100}
limits: {max_attempts: 3}
GRID
coordinator_up() { client status >/dev/null 2>&1; }
wait_until 20 "the coordinator" coordinator_up
sweep=$(client submit "$work/grid.yaml" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["sweep_id"])')
worker() { spawn "$1" "$1" "$BIN/worker" --coordinator "$url" --token-file "$work/worker.token" --threads 1 --name "$1"; }
# w1 alone takes the first job; its link goes down mid-job.
worker w1
wait_until 60 "w1 to lease a job" status_is running 1
sleep 2
job=$(grep -o 'job=[0-9a-f-]*' "$work/w1.log" | head -1 | cut -d= -f2)
ip -n "$p-w1" link set eth0 down
echo "multihost: w1 ($sub.2) cut off while running job $job"
worker w2
wait_until 240 "the sweep to finish on w2" status_is done 2
grep -q "$job" "$work/w2.log" || { echo "multihost: FAILED: w2 never ran w1's job $job"; exit 1; }
rows=$(client results "$sweep" --format csv | tail -n +2 | wc -l)
# 2 jobs x 4 measured epochs (log:4 of 20: 0, 1, 4, 20) x 1 split x 3 layers.
expected=$(( 2 * 4 * 3 ))
[[ $rows -eq $expected ]] || { echo "multihost: FAILED: $rows result rows, expected $expected (each job once)"; exit 1; }
echo "multihost: passed: 2 jobs done over namespace addresses, w1's job re-leased to w2 after its link went down, $rows rows (each job once)"
