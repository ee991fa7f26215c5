#!/usr/bin/env bash
# Fetches the dashboard's vendored front-end packages from the npm registry again and
# checks that they reproduce the committed files byte for byte (coordinator/assets/vendor/
# SHA256SUMS). With --update, copies them in instead (then review the diff of SHA256SUMS).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENDOR="$REPO/coordinator/assets/vendor"
UPLOT=uplot@1.6.32
UPLOT_TGZ_SHA256=4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d
command -v npm >/dev/null || { echo "vendor-assets: npm is needed (Debian: npm)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$UPLOT" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
echo "$UPLOT_TGZ_SHA256  $tgz" | sha256sum -c --quiet || { echo "vendor-assets: $UPLOT tarball checksum differs" >&2; exit 1; }
tar xzf "$tgz" -C "$tmp"
if [[ "${1:-}" == --update ]]; then
  cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$VENDOR/"
  cp "$tmp/package/LICENSE" "$VENDOR/uPlot.LICENSE"
  (cd "$VENDOR" && sha256sum uPlot.iife.min.js uPlot.min.css > SHA256SUMS)
  echo "vendor-assets: updated from $UPLOT"
else
  (cd "$tmp/package/dist" && sha256sum -c --quiet "$VENDOR/SHA256SUMS")
  echo "vendor-assets: $UPLOT reproduces the committed files"
fi
