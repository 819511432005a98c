#!/usr/bin/env bash
# Installs what a fresh machine lacks: Debian packages for the native builds
# and for the browser tests (Chromium and its chromedriver), and the npm
# packages (solc, OpenZeppelin, anvil) from contracts/'s lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null || need+=(cmake)
[ -n "$(ls /usr/lib/llvm-*/lib/libclang.so* 2>/dev/null)" ] || need+=(libclang-dev)
command -v chromedriver >/dev/null || need+=(chromium chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
fi

if [ -f contracts/package-lock.json ] && [ ! -d contracts/node_modules ]; then
  echo "installing npm packages for contracts/ (locked)"
  (cd contracts && npm ci --no-audit --no-fund --loglevel=error)
fi
