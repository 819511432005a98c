#!/usr/bin/env bash
# Rebuilds contracts/artifacts (ABI + bytecode, committed so that a Rust build
# needs no Node) from contracts/src and contracts/test with the pinned solc.
# Usage: scripts/build-contracts.sh [out-dir]   (default: contracts/artifacts)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-contracts/artifacts}"

if [ ! -d contracts/node_modules/solc ]; then
  echo "installing npm packages for contracts/ (locked)"
  (cd contracts && npm ci --no-audit --no-fund --loglevel=error)
fi

# Build next to the target and swap, so a failed build leaves the old
# artifacts and a removed contract leaves no stale file behind.
tmp="$(mktemp -d "${out%/}.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
node contracts/build.mjs "$tmp"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
