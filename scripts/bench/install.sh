#!/usr/bin/env bash
# Installs the peer servers of the side-by-side benchmarks (Socket.IO 4 and ws, versions pinned
# in package-lock.json) from the npm registry into scripts/bench/node_modules.
# Usage: scripts/bench/install.sh
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "npm (Node.js 18 or later) is required for the peer servers" >&2
  exit 1
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
