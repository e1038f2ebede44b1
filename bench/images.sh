#!/usr/bin/env bash
# Image pull and unpack (root): a multi-layer image (busybox's two layers plus LAYERS layers of
# 4 MiB of random data, built offline by scripts/test-images.sh) pushed to a docker-registry on
# 127.0.0.1, then per round, into fresh directories:
#   podrun pull            fetch, verify and unpack every layer (what a first container start pays)
#   skopeo copy            fetch and verify the same blobs into an OCI layout (no unpack)
#   podrun load (layout)   copy and unpack from local disk: the unpack rate without the network
# Prints the median of ROUNDS rounds of each, and the unpack throughput in MB/s of layer data
# (uncompressed tar bytes). Then container start: `podrun run` of a one-container pod running
# `echo`, from the cached image (overlay, pivot_root) beside the same pod with --host-rootfs,
# as the wall time of the whole run (create, start, exit, delete-ready).
#   bash bench/images.sh [LAYERS] [ROUNDS]      (default 8 layers, 5 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
layers=${1:-8}
rounds=${2:-5}
[ -n "${PODRUN_BIN:-}" ] || cargo build --release -p podrun
bin=${PODRUN_BIN:-$PWD/target/release/podrun}
t=$(mktemp -d)
reg=
cleanup() {
  [ -n "$reg" ] && kill "$reg" 2>/dev/null && wait "$reg" 2>/dev/null || true
  rm -rf "$t"
}
trap cleanup EXIT
MULTI=$layers bash scripts/test-images.sh "$t" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$t/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $t/storage}, delete: {enabled: true}, maintenance: {uploadpurging: {enabled: false}}}
http: {addr: 127.0.0.1:$port, secret: podrun-bench}
health: {storagedriver: {enabled: false}}
YAML
docker-registry serve "$t/config.yml" >"$t/registry.log" 2>&1 &
reg=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.05; done
image=127.0.0.1:$port/bench:multi
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$t/oci:multi" "docker://$image"
skopeo --insecure-policy copy -q "oci:$t/oci:multi" "oci:$t/single:multi"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: >"$t/pull" ; : >"$t/skopeo" ; : >"$t/load"
for r in $(seq "$rounds"); do
  rm -rf "$t/s"
  a=$(now); "$bin" --state-dir "$t/s" pull "$image" >/dev/null; b=$(now)
  echo "$b - $a" | bc >>"$t/pull"
  rm -rf "$t/sk"
  a=$(now); skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$image" "oci:$t/sk:x"; b=$(now)
  echo "$b - $a" | bc >>"$t/skopeo"
  rm -rf "$t/s"
  a=$(now); "$bin" --state-dir "$t/s" load -i "$t/single" --tag bench:load >/dev/null; b=$(now)
  echo "$b - $a" | bc >>"$t/load"
done
compressed=$(du -sb "$t/sk/blobs" | cut -f1)
unpacked=$(python3 - "$t/single" <<'PY'
import gzip, json, os, sys
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
m = json.load(open(os.path.join(d, "blobs/sha256", idx["manifests"][0]["digest"][7:])))
total = 0
for l in m["layers"]:
    with gzip.open(os.path.join(d, "blobs/sha256", l["digest"][7:])) as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
print(total)
PY
)
pull=$(median <"$t/pull"); sk=$(median <"$t/skopeo"); load=$(median <"$t/load")
echo "image: $((layers + 2)) layers, $compressed bytes compressed, $unpacked bytes of tar"
printf 'podrun pull           median %.3f s\n' "$pull"
printf 'skopeo copy           median %.3f s (fetch and verify only)\n' "$sk"
printf 'podrun load (layout)  median %.3f s, unpack throughput %.0f MB/s\n' "$load" "$(echo "$unpacked / $load / 1000000" | bc -l)"

# Container start from the cached image beside the host-filesystem start.
"$bin" --state-dir "$t/run-image" load -i "$t/single" --tag bench:start >/dev/null
cat >"$t/start.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: start}
spec:
  restartPolicy: Never
  containers: [{name: c, image: bench:start, imagePullPolicy: Never, command: ["echo", "started"]}]
YAML
: >"$t/image-run"; : >"$t/host-run"
for r in $(seq "$rounds"); do
  for mode in image host; do
    flag=; [ "$mode" = host ] && flag=--host-rootfs
    a=$(now); "$bin" --state-dir "$t/run-$mode" run $flag --timeout 60s -f "$t/start.yaml" >/dev/null; b=$(now)
    echo "$b - $a" | bc >>"$t/$mode-run"
    "$bin" --state-dir "$t/run-$mode" delete pod start >/dev/null 2>&1 || true
  done
done
printf 'podrun run, cached image   median %.3f s\n' "$(median <"$t/image-run")"
printf 'podrun run, --host-rootfs  median %.3f s\n' "$(median <"$t/host-run")"
