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

# Redis: the multi-node tests and the Redis run of the feature suite start their own
# `redis-server` on free loopback ports.
if ! need redis-server; then
  echo "== installing redis-server"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null; fi
fi

echo "== cargo test (workspace; the feature suite on the in-memory engine)"
cargo test --workspace --locked

# The same feature suite, unchanged, against the Redis engine (one parameterised suite: the
# tests read PLEXUS_TEST_ENGINE).
echo "== the feature suite on the Redis engine"
PLEXUS_TEST_ENGINE=redis cargo test --locked -p plexus-server --test channels_rpc --test lifecycle_limits --test reliability
