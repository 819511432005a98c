#!/usr/bin/env bash
# Fails when the committed contract artifacts no longer match the Solidity
# sources: recompiles into a temporary directory and compares.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
scripts/build-contracts.sh "$tmp/artifacts" >/dev/null
if ! diff -rq contracts/artifacts "$tmp/artifacts" >"$tmp/diff"; then
  head -n 40 "$tmp/diff" >&2
  echo >&2
  echo "error: contracts/artifacts is stale: the Solidity sources (contracts/src, contracts/test)" >&2
  echo "       or the compiler settings changed since the artifacts were built." >&2
  echo "       Run \`make contracts\` and commit contracts/artifacts." >&2
  exit 1
fi
echo "contracts/artifacts match the sources"
