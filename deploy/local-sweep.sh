# Sourced by deploy/demo.sh and deploy/reproduce.sh: a coordinator and local workers on this
# machine, with throwaway tokens, all stopped when the calling script exits (Ctrl-C included).
#
#   local_sweep_start BIN STORE DIR WORKERS NAME
#     BIN      directory with the `coordinator` and `worker` binaries
#     STORE    the coordinator's data directory (kept: a second start resumes it)
#     DIR      tokens (created once, mode 600) and logs (appended): coordinator.log, NAME-i.log
#     WORKERS  local workers, one libtorch thread each, named NAME-1 ... NAME-WORKERS
#   exports IBSWEEP_COORDINATOR, IBSWEEP_TOKEN_FILE and IBSWEEP_WORKER_TOKEN_FILE for the
#   client commands; local_sweep_stop stops everything (also run on exit).
#   submit_sweep BIN GRID   prints the sweep ID of GRID (submission is idempotent)

LOCAL_SWEEP_PIDS=()

local_sweep_stop() {
  trap - EXIT INT TERM
  local pid
  for pid in "${LOCAL_SWEEP_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${LOCAL_SWEEP_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  LOCAL_SWEEP_PIDS=()
}

local_sweep_start() {
  local bin=$1 store=$2 dir=$3 workers=$4 name=$5 port i token
  mkdir -p "$store" "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export IBSWEEP_COORDINATOR="http://127.0.0.1:$port"
  # `serve` and the commands read IBSWEEP_TOKEN_FILE, `serve` and the workers
  # IBSWEEP_WORKER_TOKEN_FILE.
  for token in user worker; do
    [ -s "$dir/$token.token" ] ||
      (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$dir/$token.token")
  done
  export IBSWEEP_TOKEN_FILE="$dir/user.token" IBSWEEP_WORKER_TOKEN_FILE="$dir/worker.token"
  trap local_sweep_stop EXIT
  trap "echo '$name: interrupted' >&2; exit 130" INT TERM
  "$bin/coordinator" serve --listen "127.0.0.1:$port" --data-dir "$store" 2>> "$dir/coordinator.log" &
  LOCAL_SWEEP_PIDS+=($!)
  for _ in $(seq 100); do "$bin/coordinator" status >/dev/null 2>&1 && break; sleep 0.2; done
  for i in $(seq "$workers"); do
    "$bin/worker" --threads 1 --name "$name-$i" 2>> "$dir/$name-$i.log" &
    LOCAL_SWEEP_PIDS+=($!)
  done
}

submit_sweep() {
  "$1/coordinator" submit "$2" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["sweep_id"])'
}
