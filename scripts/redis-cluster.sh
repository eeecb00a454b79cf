#!/usr/bin/env bash
# A local Redis Cluster on loopback: 3 masters and 3 replicas of the Debian `redis-server`
# (`--cluster-enabled yes`, `redis-cli --cluster create`), for the test command and for trying
# Plexus on a cluster (docs/redis.md).
#
#   scripts/redis-cluster.sh start DIR [FIRST_PORT]   # prints the nodes' URLs, comma-separated
#   scripts/redis-cluster.sh stop DIR
#   scripts/redis-cluster.sh free-port [N]            # a FIRST_PORT with N (6) free ports and bus ports
#
# Nodes listen on FIRST_PORT..FIRST_PORT+5 (default 7000; the cluster bus on +10000), keep
# their files in DIR, and stop with `stop` (their pids are in DIR/pids).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ "$cmd" = free-port ]; then
  # N consecutive loopback ports, each with its cluster bus port (+10000), free now; below the
  # usual ephemeral range for the bus ports.
  exec python3 -c '
import random, socket, sys
n = int(sys.argv[1])
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(10000):
    b = random.randrange(20000, 22700 - n)
    if all(free(b + i) and free(b + 10000 + i) for i in range(n)):
        print(b); sys.exit(0)
sys.exit("no free ports")' "${2:-6}"
fi
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR [FIRST_PORT]" >&2
  exit 2
fi

case "$cmd" in
start)
  first=${3:-7000}
  mkdir -p "$dir"
  : > "$dir/pids"
  nodes=()
  for i in 0 1 2 3 4 5; do
    port=$((first + i))
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode no \
      --cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
      --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \
      --save '' --appendonly no --dir "$dir" --daemonize yes \
      --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log"
    nodes+=("127.0.0.1:$port")
  done
  failed=""
  for i in 0 1 2 3 4 5; do
    port=$((first + i))
    for _ in $(seq 100); do
      if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
      sleep 0.1
    done
    if [ -f "$dir/redis-$port.pid" ]; then
      cat "$dir/redis-$port.pid" >> "$dir/pids"
    else
      failed="$failed $port"
    fi
  done
  if [ -n "$failed" ]; then
    echo "redis-server did not start on port(s)$failed (or their bus port +10000): see $dir/redis-*.log" >&2
    "$0" stop "$dir"
    exit 1
  fi
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  # Every node sees every slot served.
  for i in 0 1 2 3 4 5; do
    port=$((first + i))
    for _ in $(seq 300); do
      if redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok'; then break; fi
      sleep 0.1
    done
  done
  urls=()
  for node in "${nodes[@]}"; do urls+=("redis://$node"); done
  (IFS=,; echo "${urls[*]}")
  ;;
stop)
  if [ -f "$dir/pids" ]; then
    pids=$(cat "$dir/pids")
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    # Wait (at most 10 s) until they exited: they write their last files as they go.
    for _ in $(seq 100); do
      alive=""
      for pid in $pids; do if kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
      if [ -z "$alive" ]; then break; fi
      sleep 0.1
    done
    rm -f "$dir/pids"
  fi
  ;;
*)
  echo "usage: $0 start|stop DIR [FIRST_PORT]" >&2
  exit 2
  ;;
esac
