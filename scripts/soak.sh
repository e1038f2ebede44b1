#!/usr/bin/env bash
# Churn with kills: creates and deletes pods in waves on one state directory (a third
# with a native sidecar, a third injected with the mesh sidecar, a third plain, and a
# Service selecting each wave), and
# SIGKILLs `podrun run` at a random point in about half of the waves; then makes one
# final clean run and checks that nothing of the soak is left: container processes,
# network namespaces, veths, iptables chains, cgroups, mounts, address allocations and
# state entries of dead instances.
#
#   scripts/soak.sh [PODS] [WAVE]      (defaults: 40 pods in waves of 10)
#
# PODS is the number of pods over the whole run. SOAK_SEED fixes the random choices;
# PODRUN names the binary (default: target/debug/podrun, built if missing). Needs root.
# Prints the figures and exits 1 if anything leaked.
set -euo pipefail
cd "$(dirname "$0")/.."

pods="${1:-40}"
wave_size="${2:-10}"
seed="${SOAK_SEED:-$((RANDOM * 32768 + RANDOM))}"
RANDOM=$seed
if [ "$(id -u)" != 0 ]; then
  echo "soak: needs root (pods get network namespaces, veths and cgroups)" >&2
  exit 1
fi
bin="${PODRUN:-target/debug/podrun}"
if [ ! -x "$bin" ]; then
  cargo build -p podrun --locked
fi
bin="$(realpath "$bin")"

work="$(mktemp -d /tmp/podrun-soak.XXXXXX)"
# The injected proxy runs this binary as UID 1337: the work directory must be searchable.
chmod 755 "$work"
state="$work/state"
ledger="$work/ledger"
marker="podrun-soak-$$-$seed"
run_pids=()
kills=0
deletes=0
waves=0
created=0
hung=0
started=$SECONDS

# Sandbox records are written before anything is made and removed after teardown (or
# by the next podrun's recovery), so copying them while a wave runs and right after it
# ends lists every network namespace, veth, address and pod of the soak.
snapshot() {
  for f in "$state"/sandboxes/*.json; do
    [ -e "$f" ] && { cat "$f"; echo; } >>"$ledger" 2>/dev/null || true
  done
}
poll() {
  while [ -e "$work/polling" ]; do
    snapshot
    sleep 0.1
  done
}

pod() { # NAME KIND SECONDS WAVE
  local name=$1 kind=$2 secs=$3 wave=$4
  local app="command: [sh, -c, 'sleep $secs', $marker]"
  case $kind in
    sidecar)
      cat <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: $name, labels: {soak: w$wave}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: side, image: busybox, restartPolicy: Always, command: [sh, -c, 'sleep 3600', $marker]}
  containers:
  - {name: app, image: busybox, $app}
EOF
      ;;
    injected)
      cat <<EOF
---
apiVersion: v1
kind: Pod
metadata:
  name: $name
  labels: {sidecar.istio.io/inject: "true", soak: w$wave}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: busybox, $app}
EOF
      ;;
    *)
      cat <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: $name, labels: {soak: w$wave}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: busybox, $app}
  - {name: second, image: busybox, command: [sh, -c, 'sleep 1', $marker]}
EOF
      ;;
  esac
}

kinds=(sidecar injected plain)
while [ "$created" -lt "$pods" ]; do
  waves=$((waves + 1))
  n=$((pods - created < wave_size ? pods - created : wave_size))
  manifest="$work/wave-$waves.yaml"
  # A Service per wave, so every wave has iptables rules (and chains) to leave behind.
  cat >"$manifest" <<EOF
apiVersion: v1
kind: Service
metadata: {name: w$waves}
spec:
  selector: {soak: w$waves}
  ports: [{port: 80}]
EOF
  names=()
  for i in $(seq 1 "$n"); do
    name="w$waves-p$i"
    names+=("$name")
    pod "$name" "${kinds[$(((created + i) % 3))]}" $((RANDOM % 4)) "$waves" >>"$manifest"
  done
  created=$((created + n))
  touch "$work/polling"
  poll &
  poller=$!
  "$bin" --state-dir "$state" run --host-rootfs -f "$manifest" --timeout 60s >"$work/wave-$waves.out" 2>&1 &
  run=$!
  run_pids+=("$run")
  if [ $((RANDOM % 2)) = 0 ]; then
    # SIGKILL at a random point between 0.1 s and 4 s in: while sandboxes are being
    # made, containers start, pods run or terminate.
    sleep "$((RANDOM % 40 / 10)).$((RANDOM % 10))"
    kill -KILL "$run" 2>/dev/null && kills=$((kills + 1))
    wait "$run" 2>/dev/null || true
  else
    # A clean wave; now and then a pod is deleted from another terminal meanwhile.
    if [ $((RANDOM % 2)) = 0 ]; then
      sleep "0.$((RANDOM % 10))"
      victim="${names[$((RANDOM % ${#names[@]}))]}"
      "$bin" --state-dir "$state" delete pod "$victim" --grace-period 0 >/dev/null 2>&1 &&
        deletes=$((deletes + 1)) || true
    fi
    rc=0
    wait "$run" || rc=$?
    if [ "$rc" = 124 ]; then
      hung=$((hung + 1))
      echo "soak: wave $waves timed out:" >&2
      tail -n 20 "$work/wave-$waves.out" >&2
    fi
  fi
  rm -f "$work/polling"
  wait "$poller" 2>/dev/null || true
  snapshot
done

# The final clean run: recovers what the last killed instance left, runs one pod, exits.
pod final plain 0 final >"$work/final.yaml"
final_rc=0
"$bin" --state-dir "$state" run --host-rootfs -f "$work/final.yaml" --timeout 60s >"$work/final.out" 2>&1 &
run_pids+=("$!")
wait "$!" || final_rc=$?

# What the soak made, from the ledger.
field() { # KEY: every value of KEY in the ledger's records (a record a line)
  python3 - "$ledger" "$1" <<'PY' | sort -u
import json, sys
path, key = sys.argv[1], sys.argv[2]
try:
    lines = open(path).read().splitlines()
except FileNotFoundError:
    lines = []
for line in lines:
    try:
        value = json.loads(line).get(key)
    except ValueError:
        continue  # a record copied while it was being replaced
    if isinstance(value, list):
        print(" ".join(str(v) for v in value))
    elif value is not None:
        print(value)
PY
}
netns=$(field netns)
veths=$(field veth)
uids=$(field uid)
inits=$(field init)

leaks=0
report() { # CATEGORY ITEMS...
  local what=$1
  shift
  if [ $# -eq 0 ]; then
    printf '  %-34s 0\n' "$what"
  else
    printf '  %-34s %s: %s\n' "$what" "$#" "$*"
    leaks=$((leaks + $#))
  fi
}

procs=()
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = $$ ] && continue
  if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "$marker"; then procs+=("$pid"); fi
done
while read -r pid start; do
  [ -n "$pid" ] || continue
  now=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null || true)
  [ "$now" = "$start" ] && procs+=("init:$pid")
done <<<"$inits"

left_netns=()
for n in $netns; do [ -e "/run/netns/$n" ] && left_netns+=("$n"); done
left_veths=()
for v in $veths; do [ -e "/sys/class/net/$v" ] && left_veths+=("$v"); done
chains=()
saved="$(iptables-save 2>/dev/null || true)"
for pid in "${run_pids[@]}"; do
  while read -r c; do [ -n "$c" ] && chains+=("$c"); done < <(grep -o "^:PODRUN$pid-[A-Z0-9-]*" <<<"$saved" | tr -d : || true)
done
cgroups=()
for u in $uids; do
  while read -r d; do [ -n "$d" ] && cgroups+=("$d"); done < <(find /sys/fs/cgroup -maxdepth 4 -type d -name "$u" 2>/dev/null)
done
mounts=()
while read -r m; do [ -n "$m" ] && mounts+=("$m"); done < <(awk '{print $5}' /proc/self/mountinfo | grep -F -e "$state" $(for n in $netns; do printf -- '-e /run/netns/%s ' "$n"; done) || true)
allocs=()
while read -r f; do [ -n "$f" ] && allocs+=("$f"); done < <(grep -rlF -- " $state" /run/podrun/ipam 2>/dev/null || true)
entries=()
for f in "$state"/instances/* "$state"/sandboxes/*; do [ -e "$f" ] && entries+=("${f#"$state"/}"); done

echo "soak: $created pods in $waves waves (+1 final run), $kills SIGKILLs, $deletes deletions, seed $seed, $((SECONDS - started)) s"
echo "  waves that timed out (hung)       $hung"
echo "  final run exit code               $final_rc"
echo "  pods with a sandbox in the ledger $(wc -w <<<"$uids")"
echo "leftovers:"
report "container processes" "${procs[@]}"
report "network namespaces" "${left_netns[@]}"
report "veths" "${left_veths[@]}"
report "iptables chains" "${chains[@]}"
report "cgroups" "${cgroups[@]}"
report "mounts" "${mounts[@]}"
report "address allocations" "${allocs[@]}"
report "state entries of dead instances" "${entries[@]}"

if [ "$leaks" -gt 0 ] || [ "$hung" -gt 0 ] || [ "$final_rc" != 0 ]; then
  echo "soak: FAILED (work directory kept: $work)" >&2
  tail -n 20 "$work/final.out" >&2
  exit 1
fi
rm -rf "$work"
echo "soak: ok"
