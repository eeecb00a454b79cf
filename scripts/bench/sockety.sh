#!/usr/bin/env bash
# Sockety's numbers, side by side in one run (docs/benchmarks.md, "Sockety"):
#   - request/response: calls per server CPU second over Sockety TCP (`plexus serve`, the
#     development mode's `echo` action) against HTTP/2 request/response served by `hyper`
#     (`plexus-loadgen h2-echo`), the same payload, connections and requests in flight;
#   - streams: a stream echoed by Sockety's `echo` action against the same bytes through a raw
#     TCP echo (`plexus-loadgen tcp-echo`), on loopback.
# Usage: scripts/bench/sockety.sh [--quick]   (results in target/bench/sockety-<time>/)
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=10
STREAM_BYTES=$((512 * 1024 * 1024))
if [ "${1:-}" = "--quick" ]; then
  DURATION=2
  STREAM_BYTES=$((32 * 1024 * 1024))
fi

cargo build --release --locked -p plexus -p plexus-loadgen
BIN=target/release
OUT=target/bench/sockety-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

HTTP=$(free_port)
SOCKETY=$(free_port)
H2=$(free_port)
TCP=$(free_port)
# Request rate limits off: the load generator sends far more than a client would.
PLEXUS_LOG=warn "$BIN/plexus" serve --listen "127.0.0.1:$HTTP" --sockety-listen "127.0.0.1:$SOCKETY" \
  --set client.requests_per_second=100000000 --set client.requests_burst=100000000 \
  >"$OUT/plexus.log" 2>&1 &
PLEXUS_PID=$!
pids+=("$PLEXUS_PID")
"$BIN/plexus-loadgen" h2-echo --listen "127.0.0.1:$H2" >"$OUT/h2.log" 2>&1 &
H2_PID=$!
pids+=("$H2_PID")
"$BIN/plexus-loadgen" tcp-echo --listen "127.0.0.1:$TCP" >"$OUT/tcp.log" 2>&1 &
pids+=("$!")
wait_for_port "$SOCKETY"
wait_for_port "$H2"
wait_for_port "$TCP"

RESULTS="$OUT/results.jsonl"
for payload in 64 1024 16384; do
  common=(--connections 4 --in-flight 32 --payload-bytes "$payload" --warmup-s 1 --duration-s "$DURATION")
  "$BIN/plexus-loadgen" sockety-calls --addr "127.0.0.1:$SOCKETY" --server-pid "$PLEXUS_PID" "${common[@]}" | tee -a "$RESULTS"
  "$BIN/plexus-loadgen" h2-calls --addr "127.0.0.1:$H2" --server-pid "$H2_PID" "${common[@]}" | tee -a "$RESULTS"
done
for _ in 1 2 3; do
  "$BIN/plexus-loadgen" sockety-stream --addr "127.0.0.1:$SOCKETY" --bytes "$STREAM_BYTES" | tee -a "$RESULTS"
  "$BIN/plexus-loadgen" tcp-stream --addr "127.0.0.1:$TCP" --bytes "$STREAM_BYTES" | tee -a "$RESULTS"
done

python3 - "$RESULTS" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
calls = [r for r in rows if r["scenario"] == "sockety-calls"]
print("| payload | Sockety calls/s | hyper h2 calls/s | Sockety calls / server CPU s | hyper h2 calls / server CPU s | ratio | Sockety p50 ms | h2 p50 ms |")
print("|---|---|---|---|---|---|---|---|")
for payload in sorted({r["payload_bytes"] for r in calls}):
    s = next(r for r in calls if r["payload_bytes"] == payload and r["name"] == "plexus-sockety")
    h = next(r for r in calls if r["payload_bytes"] == payload and r["name"] == "hyper-h2")
    ratio = s["calls_per_server_cpu_s"] / h["calls_per_server_cpu_s"]
    print(f'| {payload} B | {s["calls_per_s"]:.0f} | {h["calls_per_s"]:.0f} | {s["calls_per_server_cpu_s"]:.0f} | {h["calls_per_server_cpu_s"]:.0f} | **{ratio:.2f}×** | {s["p50_ms"]:.2f} | {h["p50_ms"]:.2f} |')
streams = [r for r in rows if r["scenario"] == "sockety-stream"]
s = [r["mib_per_s"] for r in streams if r["name"] == "plexus-sockety-stream"]
t = [r["mib_per_s"] for r in streams if r["name"] == "tcp-copy"]
med = lambda v: sorted(v)[len(v) // 2]
print()
print("| stream (echoed, both ways) | MiB/s (median of 3) |")
print("|---|---|")
print(f"| Sockety stream, `echo` action | {med(s):.0f} |")
print(f"| raw TCP echo | {med(t):.0f} |")
print(f"| ratio | **{med(s) / med(t) * 100:.0f} %** |")
PY
echo "results: $OUT"
