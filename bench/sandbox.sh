#!/usr/bin/env bash
# Pod sandbox costs (root): sandbox setup and teardown p50/p99 from the pods' timelines,
# with the time each pod waited for a sandbox worker reported apart and added back in,
# pods/s for 100 pods created at once until all are Running, and podrun's own RSS with
# 100 pods running; then setup again, for 100 pods a second podrun creates while the first
# deletes its 100 (churn); the peer is the same network plumbing done by iproute2 commands
# (`ip netns add` + veth into the bridge + address + route), measured in the same run.
#   bash bench/sandbox.sh [PODS]        (root; default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
pods=${1:-100}
[ -n "${PODRUN_BIN:-}" ] || cargo build --release -p podrun
bin=${PODRUN_BIN:-$PWD/target/release/podrun}
state=$(mktemp -d)
manifest=$state/pods.yaml
pid=
pid2=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  [ -n "$pid2" ] && kill -TERM "$pid2" 2>/dev/null && wait "$pid2" 2>/dev/null || true
  for i in $(seq "$pods"); do ip netns del "bench-peer-$i" 2>/dev/null || true; done
  ip link del bench-peer-br 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT
for i in $(seq "$pods"); do
  printf -- '---\napiVersion: v1\nkind: Pod\nmetadata: {name: bench-%s}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: c, image: busybox, command: ["sleep", "1000"]}\n' "$i" >>"$manifest"
done

# Starts podrun on state directory $1 with every pod of the manifest; sets $pid.
start() {
  : >"$state/$1.rows" # exists before running() reads it
  "$bin" --state-dir "$state/$1" run --host-rootfs -f "$manifest" >>"$state/$1.rows" 2>"$state/$1.err" &
  pid=$!
}
# Waits until every pod of podrun $2 on state directory $1 is Running.
running() {
  while [ "$(grep -c ' Running ' "$state/$1.rows" || true)" -lt "$pods" ]; do
    kill -0 "$2" 2>/dev/null || { cat "$state/$1.err"; exit 1; }
    sleep 0.01
  done
}

# podrun: 100 pods at once, until every one is Running.
s=$(date +%s%N)
start s
running s "$pid"
e=$(date +%s%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
# Then every pod deleted at once (SIGTERM): until podrun has torn all of them down.
kill -TERM "$pid"; wait "$pid" || true; pid=
d=$(date +%s%N)
running_ms=$(( (e - s) / 1000000 ))
down_ms=$(( (d - e) / 1000000 ))

# Churn: a second podrun creates 100 pods while the first deletes its 100.
start churn-old
running churn-old "$pid"
pid2=$pid
kill -TERM "$pid2"
start churn
running churn "$pid"
kill -TERM "$pid"; wait "$pid" || true; pid=
wait "$pid2" || true; pid2=

# Peer: the same plumbing with iproute2, one pod after the other.
ip link add bench-peer-br type bridge && ip link set bench-peer-br up
ps=$(date +%s%N)
for i in $(seq "$pods"); do
  ip netns add "bench-peer-$i"
  ip link add "bpv$i" type veth peer name eth0 netns "bench-peer-$i"
  ip link set "bpv$i" master bench-peer-br up
  ip -n "bench-peer-$i" addr add "198.19.$((i / 250)).$((i % 250 + 2))/16" dev eth0
  ip -n "bench-peer-$i" link set lo up
  ip -n "bench-peer-$i" link set eth0 up
  ip -n "bench-peer-$i" route add default via 198.19.0.1 dev eth0 2>/dev/null || true
done
pe=$(date +%s%N)
for i in $(seq "$pods"); do ip link del "bpv$i"; ip netns del "bench-peer-$i"; done
pd=$(date +%s%N)
ip link del bench-peer-br

python3 - "$state/s" "$pods" "$running_ms" "$rss" "$(( (pe - ps) / 1000 ))" "$(( (pd - pe) / 1000 ))" "$down_ms" <<'PY'
import json, pathlib, sys
state, pods, running_ms, rss, peer_setup_us, peer_down_us, down_ms = sys.argv[1:]
pods, running_ms, down_ms = int(pods), int(running_ms), int(down_ms)
def events(state, name):
    out = []
    for tl in pathlib.Path(state).glob("pods/*/timeline.jsonl"):
        for line in tl.read_text().splitlines():
            e = json.loads(line)
            if e["event"] == name:
                out.append(int(e["detail"]) / 1000)
    return out
churn = events(pathlib.Path(state).parent / "churn", "sandbox-setup")
setup, queued, total, down = [], [], [], []
for tl in pathlib.Path(state).glob("pods/*/timeline.jsonl"):
    q = None
    for line in tl.read_text().splitlines():
        e = json.loads(line)
        if e["event"] == "sandbox-queued":
            q = int(e["detail"]) / 1000
            queued.append(q)
        if e["event"] == "sandbox-setup":
            setup.append(int(e["detail"]) / 1000)
            total.append(setup[-1] + (q or 0))
        if e["event"] == "sandbox-teardown":
            down.append(int(e["detail"]) / 1000)
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")
peer_setup = int(peer_setup_us) / 1000 / pods
peer_down = int(peer_down_us) / 1000 / pods
rate = pods / (running_ms / 1000)
print(f"sandboxes measured: setup {len(setup)}, teardown {len(down)}")
print(f"sandbox setup    p50 {pct(setup, .5):7.2f} ms  p99 {pct(setup, .99):7.2f} ms   iproute2 peer {peer_setup:6.2f} ms/pod  ratio p50/peer {pct(setup, .5) / peer_setup:.2f}  (target p99 <= 20)")
print(f"  queued before  p50 {pct(queued, .5):7.2f} ms  p99 {pct(queued, .99):7.2f} ms   (waiting for a sandbox worker; {len(queued)} pods)")
print(f"  queued + setup p50 {pct(total, .5):7.2f} ms  p99 {pct(total, .99):7.2f} ms")
print(f"sandbox teardown p50 {pct(down, .5):7.2f} ms  p99 {pct(down, .99):7.2f} ms   iproute2 peer {peer_down:6.2f} ms/pod  ratio p50/peer {pct(down, .5) / peer_down:.2f}")
print(f"{pods} pods created at once to Running: {running_ms} ms = {rate:.1f} pods/s (target >= 50)")
print(f"{pods} pods deleted at once until podrun exited: {down_ms} ms")
print(f"churn: sandbox setup while another podrun deletes {pods} pods  p50 {pct(churn, .5):7.2f} ms  p99 {pct(churn, .99):7.2f} ms  ({len(churn)} pods)")
print(f"podrun RSS at {pods} running pods: {int(rss) / 1024:.1f} MiB")
PY
