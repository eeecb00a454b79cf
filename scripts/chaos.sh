#!/usr/bin/env bash
# The chaos run (crates/plexus-chaos): three `plexus serve` nodes on Redis under faults — nodes
# killed with SIGKILL and restarted, Redis killed (standalone: restarted from its append-only
# file; cluster: a master killed, its replica promoted, the old master back as a replica),
# client connections dropped — with recovering subscribers (native JSON and MessagePack),
# publishers and durable mail; then the audit (no gap, no duplicate, every accepted mail
# received, no ghost presence after the bound, memory bounded). Prints one `figures` JSON line
# per run; fails if an audit fails.
#
#   scripts/chaos.sh [SECONDS_PER_RUN]      # default 55: standalone, then cluster
#   CHAOS_REDIS=cluster scripts/chaos.sh 1800   # the long run, one mode
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-55}
cargo build --locked -p plexus -p plexus-chaos
for mode in ${CHAOS_REDIS:-standalone cluster}; do
  echo "== chaos: $mode Redis, $secs s"
  target/debug/plexus-chaos --plexus target/debug/plexus --redis "$mode" --secs "$secs"
done
