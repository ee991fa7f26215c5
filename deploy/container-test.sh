#!/usr/bin/env bash
# The container image tested for real: builds deploy/Containerfile with buildah (chroot
# isolation) on base images made here from Debian's packages, then runs a tiny sweep with
# the coordinator and a worker both from the image, and prints the image size.
#
#   deploy/container-test.sh BIN_DIR     (BIN_DIR is unused; kept for the common harness)
#
# No registry is reachable here, so both bases come from `mmdebstrap --variant=minbase
# bookworm` + `podman import` (kept in the set-up cache, ~25 s the first time). The builder
# base gets this machine's Rust toolchain mounted read-only, its cargo registry and the
# set-up cache (libtorch, data) mounted, so the build downloads only Debian packages.
# `podman run` does not work on this machine kind (crun refuses the hybrid cgroup layout),
# so containers run with `buildah run --isolation chroot`, which shares the host network:
# the coordinator listens on loopback only.
# Exit 77 (skipped) when buildah/mmdebstrap/podman are missing and cannot be installed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${IBSWEEP_CACHE:-${HOME:-/root}/.cache/ibsweep}
skip() { echo "container: skipped: $*"; exit 77; }
[[ -n ${IBSWEEP_SKIP_CONTAINER:-} ]] && skip "IBSWEEP_SKIP_CONTAINER is set"
if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null || ! command -v podman >/dev/null; then
    [[ $(id -u) -eq 0 ]] || skip "buildah, podman and mmdebstrap are not installed (apt-get install buildah podman mmdebstrap)"
    echo "container: installing buildah podman mmdebstrap from Debian"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman mmdebstrap uidmap) >/dev/null 2>&1 \
        || skip "cannot install buildah, podman and mmdebstrap from Debian"
fi
[[ $(id -u) -eq 0 ]] || skip "the chroot-isolated build needs root here"
"$ROOT/deploy/setup.sh" >/dev/null 2>&1 || { echo "container: FAILED: deploy/setup.sh"; exit 1; }
W=$(mktemp -d /tmp/ibsweep-container.XXXXXX)
IMAGE=localhost/ibsweep:test
ctrs=()
pgids=()
cleanup() {
    for g in "${pgids[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    sleep 1
    for g in "${pgids[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
    for c in "${ctrs[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
    [[ -n ${KEEP:-} ]] || rm -rf "$W"
}
trap cleanup EXIT
t0=$(date +%s)

# 1. Base images from Debian's packages, made once per cache.
BASES="$CACHE/container"
mkdir -p "$BASES/target"
if ! podman image exists localhost/ibsweep-base:bookworm || ! podman image exists localhost/ibsweep-builder:bookworm; then
    if [[ ! -s "$BASES/bookworm-minbase.tar" ]]; then
        echo "container: mmdebstrap --variant=minbase bookworm"
        mmdebstrap --quiet --variant=minbase bookworm "$BASES/bookworm-minbase.partial.tar" http://deb.debian.org/debian \
            || { echo "container: FAILED: mmdebstrap"; exit 1; }
        mv "$BASES/bookworm-minbase.partial.tar" "$BASES/bookworm-minbase.tar"
    fi
    podman import --quiet "$BASES/bookworm-minbase.tar" localhost/ibsweep-base:bookworm >/dev/null
    # The official rust image's layout: cargo on PATH, CARGO_HOME=/usr/local/cargo.
    podman import --quiet \
        --change 'ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        "$BASES/bookworm-minbase.tar" localhost/ibsweep-builder:bookworm >/dev/null
fi
t_base=$(date +%s)

# 2. The image, as a lab would build it, with this machine's toolchain and caches mounted.
SYSROOT=$(rustc --print sysroot)
REGISTRY=${CARGO_HOME:-$HOME/.cargo}/registry
mkdir -p "$REGISTRY"
echo "container: buildah bud (toolchain $SYSROOT)"
if ! buildah bud --quiet --isolation chroot --layers \
        -f "$ROOT/deploy/Containerfile" \
        --build-arg BUILDER_IMAGE=localhost/ibsweep-builder:bookworm \
        --build-arg BASE_IMAGE=localhost/ibsweep-base:bookworm \
        -v "$SYSROOT:/usr/local/rust:ro" -v "$REGISTRY:/usr/local/cargo/registry" \
        -v "$CACHE:/cache" -v "$BASES/target:/build/target" \
        -t "$IMAGE" "$ROOT" > "$W/build.log" 2>&1; then
    tail -n 40 "$W/build.log"
    echo "container: FAILED: buildah bud (log above)"
    exit 1
fi
t_build=$(date +%s)
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
echo "container: image $IMAGE is $((size / 1000000)) MB (built in $((t_build - t_base)) s, bases $((t_base - t0)) s)"

# 3. A tiny sweep, every process from the image: coordinator, submit/status/results, worker.
new_ctr() { local c; c=$(buildah from --quiet "$IMAGE"); ctrs+=("$c"); echo "$c"; }
in_image() { buildah run --isolation chroot "$@"; }
coord=$(new_ctr)
client=$(new_ctr)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
setsid bash -c "exec buildah run --isolation chroot $coord -- coordinator serve --listen 127.0.0.1:$port --lease-ttl 5" \
    > "$W/coordinator.log" 2>&1 &
pgids+=($!)
up=0
for _ in $(seq 100); do
    in_image "$client" -- coordinator --coordinator "$url" status >/dev/null 2>&1 && { up=1; break; }
    sleep 0.2
done
(( up )) || { tail "$W/coordinator.log"; echo "container: FAILED: the coordinator in the image did not come up"; exit 1; }
cat > "$W/grid.yaml" <<GRID
name: container
parameters:
  dataset: {values: [mnist, fashion-mnist]}
  width: {value: 2}
  depth: {value: 2}
  kernel: {value: 3}
  epochs: {value: 3}
measure: {epochs: every, splits: [test], bin_sizes: [0.67]}
train: {train_size: 1000, test_size: 500, batch_size: 100}
GRID
# /data is a VOLUME (buildah run mounts a fresh one), so the grid goes to /tmp.
buildah copy --quiet "$client" "$W/grid.yaml" /tmp/grid.yaml >/dev/null
sweep=$(in_image "$client" -- coordinator --coordinator "$url" submit /tmp/grid.yaml --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["sweep_id"])')
worker=$(new_ctr)
setsid bash -c "exec buildah run --isolation chroot $worker -- worker --coordinator $url --threads 1 --name image-worker" \
    > "$W/worker.log" 2>&1 &
pgids+=($!)
done_jobs() {
    in_image "$client" -- coordinator --coordinator "$url" status "$sweep" --json \
        | python3 -c "import json,sys; print(json.load(sys.stdin)['sweeps'][0]['done'])"
}
finished=0
for _ in $(seq 300); do
    [[ $(done_jobs) -eq 2 ]] && { finished=1; break; }
    sleep 1
done
(( finished )) || { tail "$W/worker.log"; echo "container: FAILED: the worker in the image did not finish the sweep"; exit 1; }
rows=$(in_image "$client" -- coordinator --coordinator "$url" results "$sweep" --format csv | tail -n +2 | wc -l)
# 2 jobs x 4 measured epochs (0-3) x 1 split x 3 layers.
[[ $rows -eq 24 ]] || { echo "container: FAILED: $rows rows, expected 24"; exit 1; }
user=$(in_image "$client" -- id -un)
[[ $user == ibsweep ]] || { echo "container: FAILED: the image runs as '$user', not the ibsweep user"; exit 1; }
echo "container: passed: image $((size / 1000000)) MB, as user $user; coordinator and worker from the image finished a 2-job sweep, $rows rows, in $(( $(date +%s) - t0 )) s"
