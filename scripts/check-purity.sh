#!/usr/bin/env bash
# The pure cores stay pure: their normal (non-dev) dependency trees contain no async
# runtime and no system-call crate, and clippy (crates/<core>/clippy.toml) disallows the
# clock, filesystem, environment, process and socket calls inside them.
set -euo pipefail
cd "$(dirname "$0")/.."
cores=(podrun-model podrun-lifecycle podrun-inject podrun-netplan)
for extra in podrun-store podrun-timeline; do
  [ -d "crates/${extra#podrun-}" ] && cores+=("$extra")
done
forbidden='^(tokio|mio|nix|socket2|rustix|libc|hyper|rusqlite|async-std|smol)$'
status=0
for core in "${cores[@]}"; do
  bad=$(cargo tree --locked -p "$core" -e normal --prefix none --format '{p}' |
    awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
  if [ -n "$bad" ]; then
    echo "check-purity: $core depends on: $(echo "$bad" | tr '\n' ' ')" >&2
    status=1
  fi
  [ -f "crates/${core#podrun-}/clippy.toml" ] || {
    echo "check-purity: crates/${core#podrun-}/clippy.toml is missing" >&2
    status=1
  }
done
[ "$status" -eq 0 ] && echo "check-purity: ${#cores[@]} cores pure (${cores[*]})"
exit "$status"
