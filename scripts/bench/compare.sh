#!/usr/bin/env bash
# Side-by-side benchmarks: the same scenario, with the same load generator and the same
# parameters, against Plexus and each peer (Socket.IO 4 and ws, single Node processes), one
# server at a time; then a Markdown table per scenario with the ratio Plexus ÷ peer per figure.
#
# Usage: scripts/bench/compare.sh [SCENARIO ...]
#   SCENARIO: fanout channels rpc connect idle (default: all five)
# Environment:
#   TARGETS     servers to run (default: "plexus-json plexus-msgpack plexus-socketio socketio ws";
#               plexus-socketio is Plexus's Socket.IO dialect, the same client as socketio)
#   ROUNDS      how many times to run every (scenario, server) pair, interleaved; the table
#               shows medians (default 3; 1 with QUICK=1)
#   QUICK=1     small counts and short runs: checks the harness; the numbers mean little
#   PIN=0       do not pin; by default the server runs on CPU 0 and the load generator on CPU 1
#   OUT         directory for the results (default: target/bench/<date-time>)
#   SKIP_BUILD=1  use the binaries already in target/release
#
# Every run is bounded (the load generator stops itself); the servers listen on 127.0.0.1
# only. Results: OUT/results.jsonl (one JSON line per run), OUT/table.md, OUT/machine.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(fanout channels rpc connect idle)
read -r -a TARGET_LIST <<<"${TARGETS:-plexus-json plexus-msgpack plexus-socketio socketio ws}"
OUT="${OUT:-target/bench/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
PLEXUS="$ROOT/target/release/plexus"
LOADGEN="$ROOT/target/release/plexus-loadgen"

# Scenario parameters: identical for every server.
if [ "${QUICK:-0}" = 1 ]; then
  FANOUT="--subscribers 100 --publishers 4 --rate max --payload-bytes 100 --duration-s 2 --warmup-s 1"
  CHANNELS="--connections 200 --publishers 4 --personal-rate 200 --shared-rate 5 --payload-bytes 100 --duration-s 2 --warmup-s 1"
  RPC="--clients 50 --rate-per-client 90 --payload-bytes 100 --duration-s 2 --warmup-s 1"
  CONNECT="--connections 500 --concurrency 32"
  IDLE=("--connections 1000 --settle-s 1")
  ROUNDS="${ROUNDS:-1}"
else
  FANOUT="--subscribers 1000 --publishers 10 --rate max --window 4 --payload-bytes 100 --duration-s 10 --warmup-s 2"
  CHANNELS="--connections 2000 --publishers 10 --personal-rate 800 --shared-rate 10 --payload-bytes 100 --duration-s 10 --warmup-s 2"
  RPC="--clients 500 --rate-per-client 90 --payload-bytes 100 --duration-s 10 --warmup-s 2"
  CONNECT="--connections 5000 --concurrency 64"
  # 18 000 stays under a 20 000 open-files hard limit on each side (a common container
  # default); raise the limit to go further.
  IDLE=("--connections 10000 --settle-s 3" "--connections 18000 --settle-s 3")
  ROUNDS="${ROUNDS:-3}"
fi

if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  PIN_SERVER=(taskset -c 0)
  PIN_LOADGEN=(taskset -c 1)
else
  PIN_SERVER=()
  PIN_LOADGEN=()
fi

needs_node=0
for t in "${TARGET_LIST[@]}"; do
  case "$t" in socketio | ws) needs_node=1 ;; esac
done
[ "$needs_node" = 0 ] || scripts/bench/install.sh
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p plexus -p plexus-loadgen
fi

# Tens of thousands of sockets on each side: raise the open-files limit as far as allowed.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "kernel: $(uname -r)"
  echo "memory (free -g):"
  free -g
  echo "node: $(node --version 2>/dev/null || echo none)"
  echo "pinning: server ${PIN_SERVER[*]:-none}, load generator ${PIN_LOADGEN[*]:-none}"
} >"$OUT/machine.txt"

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT

wait_for_port() {
  local port=$1
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "the server did not listen on port $port" >&2
  return 1
}

# Starts target $1 on port $2; sets SERVER_PID and DIALECT.
start_server() {
  local target=$1 port=$2
  case "$target" in
    plexus-json | plexus-msgpack | plexus-socketio)
      case "$target" in
        plexus-socketio) DIALECT=socketio-plexus ;;
        *) DIALECT="native-${target#plexus-}" ;;
      esac
      PLEXUS_LOG=warn "${PIN_SERVER[@]}" "$PLEXUS" serve --listen "127.0.0.1:$port" \
        >"$OUT/server-$target.log" 2>&1 &
      ;;
    socketio)
      DIALECT=socketio
      "${PIN_SERVER[@]}" node scripts/bench/servers/socketio.js "$port" >"$OUT/server-$target.log" 2>&1 &
      ;;
    ws)
      DIALECT=ws
      "${PIN_SERVER[@]}" node scripts/bench/servers/ws.js "$port" >"$OUT/server-$target.log" 2>&1 &
      ;;
    *)
      echo "unknown target $target" >&2
      return 1
      ;;
  esac
  SERVER_PID=$!
  wait_for_port "$port"
}

port=18000
failures=0
for scenario in "${SCENARIOS[@]}"; do
  case "$scenario" in
    fanout) RUNS=("$FANOUT") ;;
    channels) RUNS=("$CHANNELS") ;;
    rpc) RUNS=("$RPC") ;;
    connect) RUNS=("$CONNECT") ;;
    idle) RUNS=("${IDLE[@]}") ;;
    *)
      echo "unknown scenario $scenario (fanout channels rpc connect idle)" >&2
      exit 2
      ;;
  esac
  for args in "${RUNS[@]}"; do
    for round in $(seq 1 "$ROUNDS"); do
      for target in "${TARGET_LIST[@]}"; do
        if [ "$scenario" = channels ] && [ "$target" = ws ]; then
          continue # plain WebSocket has no channels
        fi
        port=$((port + 1))
        echo "== $scenario · $target · round $round/$ROUNDS · $args" >&2
        start_server "$target" "$port"
        # shellcheck disable=SC2086 # the scenario's arguments are words
        if ! "${PIN_LOADGEN[@]}" "$LOADGEN" "$scenario" --addr "127.0.0.1:$port" \
          --dialect "$DIALECT" --name "$target" --server-pid "$SERVER_PID" --out "$RESULTS" \
          $args >/dev/null; then
          echo "!! $scenario against $target failed" >&2
          failures=$((failures + 1))
        fi
        stop_server
        sleep 1
      done
    done
  done
done

"$LOADGEN" compare "$RESULTS" >"$OUT/table.md"
cat "$OUT/machine.txt"
echo
cat "$OUT/table.md"
echo "results in $OUT" >&2
[ "$failures" = 0 ]
