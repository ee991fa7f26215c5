#!/usr/bin/env bash
# The Slurm deployment tested for real: a single-node Slurm (Debian's slurm-wlm + munge,
# the recipe of ../shared/slurm-local.md) in a private work directory, a coordinator on
# loopback, deploy/slurm/worker.sbatch submitted as a job array that finishes a tiny sweep;
# then a running task is `scancel`led mid-job and its job must be released and finished by
# another task, exactly once.
#   deploy/slurm-test.sh BIN_DIR     (where `coordinator` and `worker` are)
# Exit 77 (skipped) when Slurm is not installed and cannot be, or does not start here.
set -euo pipefail
BIN=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
skip() { echo "slurm: skipped: $*"; exit 77; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    [[ $(id -u) -eq 0 ]] || skip "slurm-wlm and munge are not installed (apt-get install slurm-wlm munge)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) >/dev/null 2>&1 \
        || skip "cannot install slurm-wlm and munge from Debian"
fi
W=$(mktemp -d /tmp/ibsweep-slurm.XXXXXX)
chmod 755 "$W" # munged wants every directory above its socket searchable by all
pids=()
cleanup() {
    scancel --quiet --full --signal=KILL --jobname=ibsweep-worker 2>/dev/null || true
    # Let slurmd see its steps end before it is stopped: killed first, it leaves their
    # slurmstepd (and the worker under it) running after the test.
    for _ in $(seq 20); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.5; done
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    [[ -n ${KEEP:-} ]] || rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W"/{munge,sock,state,spool,log,out}; chmod 700 "$W/munge"; chmod 755 "$W/sock"
dd if=/dev/urandom of="$W/munge/munge.key" bs=1 count=1024 2>/dev/null; chmod 400 "$W/munge/munge.key"
munged -F --key-file="$W/munge/munge.key" --socket="$W/sock/munge.socket.2" --pid-file="$W/munge/munged.pid" \
    --log-file="$W/log/munged.log" --seed-file="$W/munge/munged.seed" 2>/dev/null &
pids+=($!)
mem=$(( $(free -m | awk '/^Mem:/ {print $2}') * 9 / 10 ))
cat > "$W/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$W/sock/munge.socket.2
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
Epilog=/bin/true
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$W/slurm.conf
sleep 1
slurmctld -D -f "$SLURM_CONF" > "$W/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N localhost -f "$SLURM_CONF" > "$W/log/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 150); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 0.2; done
sinfo -h -o %T 2>/dev/null | grep -q idle || skip "slurmctld/slurmd did not come up ($(tail -n 3 "$W/log/slurmctld.out" | tr '\n' ' '))"

wait_until() { # seconds description command...
    local limit=$1 what=$2; shift 2
    for _ in $(seq $((limit * 5))); do "$@" && return 0; sleep 0.2; done
    echo "slurm: FAILED waiting for $what"; tail -n 30 "$W"/out/*.log "$W/coordinator.log" 2>/dev/null; exit 1
}
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/user.token"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/worker.token"
chmod 600 "$W"/*.token
export IBSWEEP_COORDINATOR=http://127.0.0.1:$port IBSWEEP_TOKEN_FILE=$W/user.token IBSWEEP_WORKER_TOKEN_FILE=$W/worker.token IBSWEEP_BIN=$BIN
"$BIN/coordinator" serve --listen "127.0.0.1:$port" --lease-ttl 5 --data-dir "$W/store" 2> "$W/coordinator.log" &
pids+=($!)
up() { "$BIN/coordinator" status >/dev/null 2>&1; }
wait_until 20 "the coordinator" up
cat > "$W/grid.yaml" <<GRID
name: slurm
parameters:
  dataset: {values: [mnist, fashion-mnist]}
  width: {value: 2}
  depth: {value: 2}
  kernel: {value: 3}
  seed: {values: [0, 1]}
  epochs: {value: 40}
measure: {epochs: "log:3", splits: [test], bin_sizes: [0.67]}
train: {train_size: 2000, test_size: 500, batch_size: 100}
limits: {max_attempts: 2}
GRID
sweep=$("$BIN/coordinator" submit "$W/grid.yaml" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["sweep_id"])')
count() { "$BIN/coordinator" status "$sweep" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['sweeps'][0]['$1'])"; }
array=$(cd "$W/out" && sbatch --parsable --array=1-2 --cpus-per-task=1 "$ROOT/deploy/slurm/worker.sbatch")
echo "slurm: array $array submitted for sweep $sweep"
running_two() { [[ $(count running) -eq 2 ]]; }
wait_until 120 "two array tasks running jobs" running_two
sleep 2
# A task is cancelled mid-job: its worker gets SIGTERM and releases the job.
scancel "${array}_1"
released() { grep -q "released" "$W/coordinator.log" || grep -q "release = true" "$W/coordinator.log"; }
wait_until 60 "the cancelled task to release its job" released
# The released job is taken by the other task and every job finishes once.
done_all() { [[ $(count done) -eq 4 ]]; }
wait_until 300 "the sweep to finish" done_all
[[ $(count failed) -eq 0 ]] || { echo "slurm: FAILED: failed jobs"; exit 1; }
rows=$("$BIN/coordinator" results "$sweep" --format csv | tail -n +2 | wc -l)
# 4 jobs x 3 measured epochs (log:3 of 40: 0, 1, 40) x 1 split x 3 layers.
[[ $rows -eq $(( 4 * 3 * 3 )) ]] || { echo "slurm: FAILED: $rows rows, expected 36 (each job once)"; exit 1; }
echo "slurm: passed: array $array finished the sweep; task 1 scancelled mid-job released its job, finished by task 2; $rows rows"
