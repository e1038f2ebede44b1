#!/usr/bin/env bash
# Builds the image-test fixture offline from the static busybox, with umoci, into an OCI layout:
#   DIR/oci:1  layers /bin (busybox and its links) and /etc (passwd, group); Entrypoint /bin/sh,
#              Cmd [-c, echo image-cmd], Env PATH=/bin FROM_IMAGE=1, WorkingDir /work, User app
#   DIR/oci:2  the same two layers plus one with /extra/file (a shared base for GC tests)
#   DIR/oci:multi  (with MULTI=N) N more layers of 4 MiB of random data each, for the bench
# Usage: scripts/test-images.sh DIR
set -euo pipefail
T=${1:?usage: test-images.sh DIR}
for cmd in umoci busybox; do
  command -v "$cmd" >/dev/null || { echo "test-images.sh: $cmd is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
rm -rf "$T/oci" "$T/root" "$T/extra"
mkdir -p "$T/root/bin" "$T/root/etc" "$T/extra"
umoci init --layout "$T/oci"
umoci new --image "$T/oci:1"
cp "$(command -v busybox)" "$T/root/bin/busybox"
for l in sh ls cat id env pwd echo sleep touch stat mkdir; do ln -s busybox "$T/root/bin/$l"; done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >"$T/root/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n' >"$T/root/etc/group"
umoci insert --image "$T/oci:1" "$T/root/bin" /bin
umoci insert --image "$T/oci:1" "$T/root/etc" /etc
umoci config --image "$T/oci:1" --config.entrypoint /bin/sh --config.cmd -c --config.cmd 'echo image-cmd' \
  --config.env PATH=/bin --config.env FROM_IMAGE=1 --config.workingdir /work --config.user app
umoci tag --image "$T/oci:1" 2
echo extra >"$T/extra/file"
umoci insert --image "$T/oci:2" "$T/extra" /extra
if [ -n "${MULTI:-}" ]; then
  umoci tag --image "$T/oci:1" multi
  for i in $(seq 1 "$MULTI"); do
    mkdir -p "$T/multi$i"
    head -c $((4 << 20)) /dev/urandom >"$T/multi$i/data"
    umoci insert --image "$T/oci:multi" "$T/multi$i" "/data$i"
  done
fi
umoci gc --layout "$T/oci"
