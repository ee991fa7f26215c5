#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs what is missing (deploy/setup.sh,
# idempotent), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
deploy/setup.sh
cargo test --workspace --locked "$@"
