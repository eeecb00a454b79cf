#!/usr/bin/env bash
# The Autobahn|Testsuite fuzzing client against a raw echo endpoint of `plexus serve`
# (docs/endpoints.md, docs/guarantees.md): every case except permessage-deflate (12.*, 13.*)
# must end OK, NON-STRICT or INFORMATIONAL, with a clean close. Run by scripts/test.sh.
#
# Needs Python 2.7 (autobahntestsuite is Python 2 only): `python2.7` on the PATH or pyenv's
# 2.7.18. The suite installs from the Python package registry into target/autobahn-venv.
# Writes the report to target/autobahn/ and the summary to target/autobahn/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

py2=""
for candidate in python2.7 "$HOME/.pyenv/versions/2.7.18/bin/python" /root/.pyenv/versions/2.7.18/bin/python; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[0] != 2)' 2>/dev/null; then
    py2=$candidate
    break
  fi
done
if [ -z "$py2" ]; then
  echo "Python 2.7 is required for the Autobahn suite (python2.7, or pyenv's 2.7.18)" >&2
  exit 1
fi

venv=target/autobahn-venv
if [ ! -x "$venv/bin/wstest" ]; then
  echo "== installing autobahntestsuite into $venv"
  if ! "$py2" -m virtualenv --version >/dev/null 2>&1; then
    "$py2" -m pip install --quiet --user "virtualenv<20.22" 2>&1 | grep -v DEPRECATION || true
  fi
  rm -rf "$venv"
  "$py2" -m virtualenv --quiet "$venv"
  "$venv/bin/pip" install --quiet "autobahntestsuite==0.8.2" 2>&1 | grep -v DEPRECATION || true
fi

cargo build --locked -p plexus
out=target/autobahn
rm -rf "$out"
mkdir -p "$out"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The echo endpoint takes what the suite sends: messages up to 16 MiB, thousands at once.
cat > "$out/plexus.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[client]
anonymous = true
[[endpoints]]
path = "/echo"
mode = "echo"
max_message_bytes = 16777216
outbound_queue_bytes_max = 67108864
messages_per_second = 1000000
messages_burst = 1000000
TOML
PLEXUS_LOG=warn target/debug/plexus serve --config "$out/plexus.toml" > "$out/serve.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health')" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
cat > "$out/fuzzingclient.json" <<JSON
{
  "outdir": "$PWD/$out/report",
  "servers": [{"agent": "plexus", "url": "ws://127.0.0.1:$port/echo"}],
  "cases": ["*"],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
JSON
(cd "$out" && "../../$venv/bin/wstest" -m fuzzingclient -s fuzzingclient.json > wstest.log 2>&1) || {
  echo "wstest failed:" >&2
  tail -30 "$out/wstest.log" >&2
  exit 1
}
kill "$pid"
wait "$pid" 2>/dev/null || true
trap - EXIT

python3 - "$out/report/index.json" "$out/summary.txt" <<'PY'
import collections, json, sys
index = json.load(open(sys.argv[1]))["plexus"]
ok = {"OK", "NON-STRICT", "INFORMATIONAL"}
counts = collections.Counter()
bad = []
for case, result in sorted(index.items(), key=lambda kv: [int(x) for x in kv[0].split(".")]):
    counts[result["behavior"]] += 1
    if result["behavior"] not in ok or result["behaviorClose"] not in ok | {"UNIMPLEMENTED"}:
        bad.append("%s: %s (close: %s)" % (case, result["behavior"], result["behaviorClose"]))
summary = "Autobahn|Testsuite fuzzingclient, %d cases (12.* and 13.* excluded): %s" % (
    len(index), ", ".join("%s %d" % kv for kv in sorted(counts.items())))
open(sys.argv[2], "w").write(summary + "\n" + "\n".join(bad) + "\n")
print(summary)
for line in bad:
    print("  " + line)
sys.exit(1 if bad else 0)
PY
