#!/usr/bin/env bash
# Fan-out through two Plexus nodes on one standalone Redis, and on a 3+3 Redis Cluster (sharded
# pub/sub), interleaved: subscribers on one node, publishers on the other, so every publication
# crosses Redis. Release builds; everything on loopback; every run bounded by the load
# generator. Writes target/bench/cluster-<date>/results.jsonl and prints the JSON lines.
#
#   scripts/bench/cluster-fanout.sh [ROUNDS]      # default 2
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-2}
cargo build --release --locked -p plexus -p plexus-loadgen
out=target/bench/cluster-$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$out"
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  scripts/redis-cluster.sh stop "$dir/cluster" || true
  sleep 1 # the servers write their last files as they exit
  rm -rf "$dir" || true
}
trap cleanup EXIT
free() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
base=$(scripts/redis-cluster.sh free-port 7)
redis-server --port "$base" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$dir/standalone.pid" --logfile "$dir/standalone.log" --dir "$dir"
sleep 0.5
pids+=("$(cat "$dir/standalone.pid")")
scripts/redis-cluster.sh start "$dir/cluster" $((base + 1)) >/dev/null
cat > "$dir/cluster.toml" <<TOML
engine = "redis"
[server]
dev_mode = true
[redis]
cluster = ["redis://127.0.0.1:$((base + 1))", "redis://127.0.0.1:$((base + 2))", "redis://127.0.0.1:$((base + 3))"]
TOML
start_node() { # name, port, args...
  local name=$1 port=$2
  shift 2
  target/release/plexus serve --listen "127.0.0.1:$port" "$@" > "$dir/$name.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 100); do
    if curl -fs "http://127.0.0.1:$port/health" >/dev/null; then return; fi
    sleep 0.1
  done
  echo "node $name did not start" >&2
  exit 1
}
sa=$(free); sb=$(free); ca=$(free); cb=$(free)
start_node standalone-a "$sa" --engine redis --redis-url "redis://127.0.0.1:$base/"
start_node standalone-b "$sb" --engine redis --redis-url "redis://127.0.0.1:$base/"
start_node cluster-a "$ca" --config "$dir/cluster.toml"
start_node cluster-b "$cb" --config "$dir/cluster.toml"
for round in $(seq "$rounds"); do
  for publishers in 10 40; do
    L="target/release/plexus-loadgen fanout --subscribers 500 --publishers $publishers --rate max --duration-s 8 --warmup-s 2 --out $out/results.jsonl"
    $L --name "standalone-p$publishers-r$round" --addr "127.0.0.1:$sb" --publish-addr "127.0.0.1:$sa"
    $L --name "cluster-p$publishers-r$round" --addr "127.0.0.1:$cb" --publish-addr "127.0.0.1:$ca"
  done
done
echo "results: $out/results.jsonl"
