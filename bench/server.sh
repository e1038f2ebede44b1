#!/usr/bin/env bash
# `podrun server` with the real kubectl 1.37 (root: the apply → running rounds start real
# pods). One server on a fresh state directory, each figure beside a baseline measured in
# the same run, medians of ROUNDS:
#   kubectl get pods, PODS pods stored    server time of the list requests kubectl makes
#                                         (the server's own `request … elapsed_us` debug
#                                         log), and kubectl's wall time; baselines: the same
#                                         server time for an empty namespace, for `-o json`
#                                         (no Table), the same pods read straight from
#                                         SQLite, and `cat` of their JSON
#   watch fan-out                         a ConfigMap create until all WATCHERS raw watches
#                                         have its ADDED event; baseline: one watcher
#   apply → first container running       `kubectl apply` of a one-container pod until a
#                                         watch sees its container running; baseline:
#                                         until kubectl apply returns (acknowledged)
#   server RSS                            at start, after the creates, after the lists
# The stored pods are bound to a node that is not this server's (spec.nodeName), so none
# runs: the list and memory figures are the API's and the store's alone.
#   bash bench/server.sh [PODS] [WATCHERS] [ROUNDS]   (default 1000 100 10)
# PODRUN_BIN=path uses that binary instead of building target/release/podrun.
set -euo pipefail
cd "$(dirname "$0")/.."
pods=${1:-1000}
watchers=${2:-100}
rounds=${3:-10}
[ "$(id -u)" = 0 ] || { echo "bench/server.sh needs root: its pods get their own namespaces" >&2; exit 1; }
[ -n "${PODRUN_BIN:-}" ] || cargo build --release -p podrun
bin=${PODRUN_BIN:-$PWD/target/release/podrun}
t=$(mktemp -d)
srv=
cleanup() {
  if [ -n "$srv" ]; then
    kill -TERM "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
  fi
  rm -rf "$t"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PODRUN_LOG=podrun_apiserver=debug "$bin" --state-dir "$t/s" server --host-rootfs \
  --listen "127.0.0.1:$port" >"$t/out" 2>"$t/log" &
srv=$!
for _ in $(seq 300); do grep -q '^export KUBECONFIG=' "$t/out" 2>/dev/null && break; sleep 0.1; done
grep -q '^export KUBECONFIG=' "$t/out" || { cat "$t/log" >&2; exit 1; }
mkdir -p "$t/home"
export KUBECONFIG=$t/s/kubeconfig HOME=$t/home
echo "podrun server $("$bin" --version 2>/dev/null | head -1), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$t" "$srv" "$pods" "$watchers" "$rounds" <<'PY'
import http.client, json, os, re, sqlite3, ssl, statistics, subprocess, sys, threading, time

t, pid, npods, nwatch, rounds = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6])
state = f"{t}/s"
kubeconfig = open(f"{state}/kubeconfig").read()
host, port = re.search(r"server: \"?https://([^:]+):(\d+)", kubeconfig).groups()
token = open(f"{state}/token").read().strip()
ctx = ssl.create_default_context(cafile=f"{state}/ca.crt")
AUTH = {"Authorization": f"Bearer {token}"}
LOG = f"{t}/log"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def conn():
    return http.client.HTTPSConnection(host, int(port), context=ctx, timeout=120)


def request(method, path, body=None):
    c = conn()
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={**AUTH, "Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data)


def kubectl(*args, stdin=None):
    return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True,
                          check=True).stdout


def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def server_us(fn, path_re):
    """Runs fn; the server time (µs) of the requests whose path matches, summed."""
    start = os.path.getsize(LOG)
    fn()
    time.sleep(0.05)
    with open(LOG, "rb") as f:
        f.seek(start)
        text = ANSI.sub("", f.read().decode(errors="replace"))
    total = 0
    for line in text.splitlines():
        m = re.search(r"path=(\S+).*elapsed_us=(\d+)", line)
        if m and re.fullmatch(path_re, m.group(1)):
            total += int(m.group(2))
    return total


def med(xs):
    return statistics.median(xs)


def ms(us):
    return f"{us / 1000:.1f} ms"


rss_start = rss_mb()
kubectl("get", "namespaces")  # discovery warm-up, the server's first requests

# PODS stored pods, created through the API by kubectl (one fsync'd write each).
items = [{"apiVersion": "v1", "kind": "Pod",
          "metadata": {"name": f"bench-{i:04}", "labels": {"app": "bench", "n": str(i % 10)}},
          "spec": {"nodeName": "elsewhere",
                   "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"],
                                   "ports": [{"containerPort": 8080}]},
                                  {"name": "sidecar", "image": "busybox"}]}}
         for i in range(npods)]
a = time.monotonic()
kubectl("create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
create_s = time.monotonic() - a
rss_created = rss_mb()

PODS = r"/api/v1/namespaces/default/pods"
get_server, get_wall, empty_server, json_server = [], [], [], []
for _ in range(rounds):
    a = time.monotonic()
    get_server.append(server_us(lambda: kubectl("get", "pods"), PODS))
    get_wall.append((time.monotonic() - a) * 1e6)
    empty_server.append(server_us(lambda: kubectl("get", "pods", "-n", "kube-system"),
                                  r"/api/v1/namespaces/kube-system/pods"))
    json_server.append(server_us(lambda: kubectl("get", "pods", "-o", "json"), PODS))
rss_listed = rss_mb()

# Baselines without the server: the newest row of each pod key straight from SQLite,
# and cat of the same pods' JSON.
db = sqlite3.connect(f"file:{state}/store.db?mode=ro", uri=True)
sqlite_us = []
for _ in range(rounds):
    a = time.monotonic()
    rows = db.execute(
        "SELECT value FROM log WHERE revision IN (SELECT max(revision) FROM log "
        "WHERE key >= '/registry/pods/default/' AND key < '/registry/pods/default0' GROUP BY key) "
        "AND deleted = 0").fetchall()
    sqlite_us.append((time.monotonic() - a) * 1e6)
assert len(rows) == npods, len(rows)
with open(f"{t}/pods.json", "w") as f:
    f.write(kubectl("get", "pods", "-o", "json"))
cat_us = []
for _ in range(rounds):
    a = time.monotonic()
    subprocess.run(["cat", f"{t}/pods.json"], stdout=subprocess.DEVNULL, check=True)
    cat_us.append((time.monotonic() - a) * 1e6)


# Watch fan-out: WATCHERS raw watches of ConfigMaps; each round creates one and waits
# until every watcher has read its ADDED event.
def fan_out(n, tag):
    rv = request("GET", "/api/v1/namespaces/default/configmaps")["metadata"]["resourceVersion"]
    arrived = {}
    cond = threading.Condition()
    ready = threading.Barrier(n + 1)
    conns = []

    def watcher(k):
        c = conn()
        c.request("GET", f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}",
                  headers=AUTH)
        r = c.getresponse()
        conns.append(c)
        ready.wait()
        while True:
            line = r.readline()
            if not line:
                return
            now = time.monotonic()
            name = json.loads(line)["object"]["metadata"].get("name", "")
            with cond:
                arrived.setdefault(name, []).append(now)
                cond.notify_all()
            if name == f"{tag}-stop":
                return

    threads = [threading.Thread(target=watcher, args=(k,), daemon=True) for k in range(n)]
    for th in threads:
        th.start()
    ready.wait()
    last, first = [], []
    for i in range(rounds + 1):
        name = f"{tag}-{i}" if i < rounds else f"{tag}-stop"
        a = time.monotonic()
        request("POST", "/api/v1/namespaces/default/configmaps",
                {"metadata": {"name": name}, "data": {"k": "v"}})
        with cond:
            ok = cond.wait_for(lambda: len(arrived.get(name, [])) == n, timeout=60)
        assert ok, f"{name}: {len(arrived.get(name, []))} of {n} watchers"
        if i < rounds:
            first.append((min(arrived[name]) - a) * 1e6)
            last.append((max(arrived[name]) - a) * 1e6)
    for th in threads:
        th.join(10)
    for c in conns:
        c.close()
    return med(first), med(last)


fan_first, fan_last = fan_out(nwatch, "fan")
one_first, _ = fan_out(1, "one")
rss_watched = rss_mb()

# apply → first container running, watched through the API.
POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: busybox
    command: ["/bin/sleep", "3600"]
"""
ack_us, run_us = [], []
for i in range(min(rounds, 5)):
    name = f"run-{i}"
    rv = request("GET", "/api/v1/namespaces/default/pods?limit=1")["metadata"]["resourceVersion"]
    c = conn()
    c.request("GET", f"{PODS}?watch=1&resourceVersion={rv}&fieldSelector=metadata.name%3D{name}"
              "&timeoutSeconds=60", headers=AUTH)
    r = c.getresponse()
    a = time.monotonic()
    kubectl("apply", "-f", "-", stdin=POD.format(name=name))
    ack_us.append((time.monotonic() - a) * 1e6)
    while True:
        line = r.readline()
        if not line:
            raise SystemExit(f"{name} never ran")
        pod = json.loads(line)["object"]
        states = [s.get("state", {}) for s in pod.get("status", {}).get("containerStatuses", [])]
        if any("running" in s for s in states):
            run_us.append((time.monotonic() - a) * 1e6)
            break
    c.close()
    kubectl("delete", "pod", name, "--wait=false")

print()
print(f"{npods} pods stored (created by kubectl create -f in {create_s:.1f} s, "
      f"{npods / create_s:.0f}/s); medians of {rounds} rounds")
print()
print("| measure | figure | baseline in the same run |")
print("|---|---|---|")
print(f"| `kubectl get pods`, server time | {ms(med(get_server))} | empty namespace: "
      f"{ms(med(empty_server))}; `-o json` (no Table): {ms(med(json_server))}; the same pods "
      f"straight from SQLite: {ms(med(sqlite_us))}; `cat` of their JSON: {ms(med(cat_us))} |")
print(f"| `kubectl get pods`, wall time (kubectl included) | {ms(med(get_wall))} | — |")
print(f"| watch fan-out, create → all {nwatch} watchers have the event | {ms(fan_last)} "
      f"(first watcher {ms(fan_first)}) | one watcher: {ms(one_first)} |")
print(f"| `kubectl apply` → first container running | {ms(med(run_us))} | "
      f"`kubectl apply` acknowledged: {ms(med(ack_us))} |")
print(f"| server RSS | {rss_created:.0f} MB after the creates, {rss_listed:.0f} MB after the "
      f"lists, {rss_watched:.0f} MB after the watches | {rss_start:.0f} MB at start |")
PY
