#!/usr/bin/env bash
# Lifecycle latencies on real processes, from the pods' timelines, plus the wall time of
# the exiting-pod example against a peer that runs the same commands in a plain shell.
#   bash bench/lifecycle.sh [RUNS]        (root; default 30 runs)
# PODRUN_BIN=path uses an existing binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
bin=${PODRUN_BIN:-target/release/podrun}
[ -n "${PODRUN_BIN:-}" ] || cargo build --release --locked -q -p podrun
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
walls=()
peer=()
for i in $(seq "$runs"); do
  s=$(date +%s%N)
  "$bin" --state-dir "$state/$i" run --host-rootfs -f examples/exiting-pod.yaml >/dev/null
  e=$(date +%s%N)
  walls+=($(( (e - s) / 1000 )))
  # The peer: the same container commands, in order, with no lifecycle around them.
  s=$(date +%s%N)
  sh -c 'echo traffic capture rules installed' >/dev/null
  sh -c "trap 'exit 0' TERM; while :; do sleep 1 & wait \$!; done" & p=$!
  true; sleep 1; kill -TERM $p; wait $p || true
  e=$(date +%s%N)
  peer+=($(( (e - s) / 1000 )))
done
python3 - "$state" "${walls[*]}" "${peer[*]}" <<'PY'
import json, pathlib, statistics, sys
state = pathlib.Path(sys.argv[1])
walls = [int(x) / 1000 for x in sys.argv[2].split()]
peer = [int(x) / 1000 for x in sys.argv[3].split()]
exit_to_term, started_to_next, exit_to_phase = [], [], []
for tl in state.glob("*/pods/*/timeline.jsonl"):
    ev = [json.loads(l) for l in tl.read_text().splitlines()]
    t = lambda e: int(e["t"]) / 1e6  # ms
    main_exit = next(e for e in ev if e["event"] == "exited" and e["container"].startswith("Regular"))
    term = next(e for e in ev if e["event"] == "signal" and e["container"] == "Init(1)" and e["detail"] == "Term")
    exit_to_term.append(t(term) - t(main_exit))
    started = next(e for e in ev if e["event"] == "probe" and e["container"] == "Init(1)" and "Success" in e["detail"])
    nxt = next(e for e in ev if e["event"] == "start" and e["container"] == "Regular(0)")
    started_to_next.append(t(nxt) - t(started))
    sc_exit = next(e for e in ev if e["event"] == "exited" and e["container"] == "Init(1)")
    phase = next(e for e in ev if e["event"] == "phase" and e["detail"] == "Succeeded")
    exit_to_phase.append(t(phase) - t(sc_exit))
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
print(f"runs: {len(exit_to_term)}")
for name, xs in [("last regular exit -> first sidecar SIGTERM", exit_to_term),
                 ("sidecar started -> next container started", started_to_next),
                 ("sidecar exit -> pod phase Succeeded", exit_to_phase)]:
    print(f"{name:45s} p50 {pct(xs,50):7.3f} ms   p99 {pct(xs,99):7.3f} ms")
w, pr = statistics.median(walls), statistics.median(peer)
print(f"{'exiting-pod wall time (podrun run)':45s} p50 {w:7.1f} ms   p99 {pct(walls,99):7.1f} ms")
print(f"{'same commands in a plain shell (peer)':45s} p50 {pr:7.1f} ms")
print(f"{'podrun / peer (median)':45s} {w / pr:7.3f}x")
PY
