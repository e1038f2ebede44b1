#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind's callgrind:
# repeatable on a busy machine, unlike CPU time. Each proxy starts under callgrind,
# its counters are zeroed once it listens, N keep-alive requests go through it
# (oha, 32 connections) to an HAProxy backend, and the counters are dumped.
# Kernel work (system calls) is not counted; `strace -c` gives the call counts.
#
# Usage: [N=3000] bench/proxy/instructions.sh   (needs valgrind, oha, haproxy; Envoy optional)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-3000}
PODRUN=${PODRUN:-target/release/podrun}
OHA=${OHA:-$(command -v oha || echo /opt/oha/bin/oha)}
OUT=${OUT:-target/bench-proxy-instructions}
ENVOY=${ENVOY:-$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null \
  || /opt/envoy-venv/bin/python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null \
  || true)}
BACKEND_PORT=18080
mkdir -p "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The same configurations as run.sh (backend, HAProxy and Envoy files).
OUT="$OUT" ROUNDS=0 bash bench/proxy/run.sh --configs-only >/dev/null
haproxy -f "$OUT/backend.cfg" -db >/dev/null 2>&1 & pids+=($!)

wait_port() { for _ in $(seq 600); do ss -ltn "sport = :$1" | grep -q LISTEN && return 0; sleep 0.1; done; return 1; }

measure() { # name port command...
  local name=$1 port=$2; shift 2
  rm -f "$OUT/$name.cg"*
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.cg" "$@" >"$OUT/$name.log" 2>"$OUT/$name.err" &
  local p=$!; pids+=("$p")
  wait_port "$port" || { echo "$name did not listen"; return 1; }
  sleep 1
  callgrind_control -z "$p" >/dev/null
  "$OHA" -n "$N" -c 32 --no-tui "http://127.0.0.1:$port/" >"$OUT/$name.oha"
  callgrind_control -d "$p" >/dev/null
  sleep 1
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  local total
  total=$(grep -h '^totals:' "$OUT/$name.cg".* | awk '{s+=$2} END {print s}')
  echo "$name $((total / N))" | tee -a "$OUT/results.txt"
}

: >"$OUT/results.txt"
measure podrun 18001 "$PODRUN" proxy --listen-ip 127.0.0.1 --outbound-port 18001 --inbound-port 18006 \
  --health-port 18021 --status-port 0 --stats-port 18090 --admin-port 0 \
  --fixed-original-dst 127.0.0.1:$BACKEND_PORT
measure haproxy 18003 haproxy -f "$OUT/haproxy.cfg" -db
if [ -n "$ENVOY" ] && [ -x "$ENVOY" ]; then
  measure envoy 18002 "$ENVOY" -c "$OUT/envoy.yaml" --concurrency 1
fi
python3 - "$OUT/results.txt" <<'PY'
import sys
r = dict(l.split() for l in open(sys.argv[1]))
print("instructions per request (user space):", ", ".join(f"{k} {int(v)}" for k, v in r.items()))
for peer in ("haproxy", "envoy"):
    if peer in r:
        print(f"podrun / {peer}: {int(r['podrun']) / int(r[peer]):.2f}")
PY
