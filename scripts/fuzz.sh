#!/usr/bin/env bash
# Builds the coverage-guided fuzz targets in fuzz/ and runs each for a bounded time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS is the time per target (default 30); with no TARGET every target runs. The
# stable toolchain is enough: LLVM's sanitizer-coverage pass is requested through
# -Cpasses/-Cllvm-args and libFuzzer itself comes from the libfuzzer-sys crate, built
# with the system C++ compiler. Exits non-zero if any target crashes; the crashing
# input is written under fuzz/artifacts/TARGET/ and can be replayed by passing that
# file to fuzz/target/<triple>/release/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(sniff h1_codec http_downstream)
fi

triple="$(rustc -vV | sed -n 's/^host: //p')"
# Edge coverage with 8-bit hit counters and a PC table for libFuzzer, plus operands of
# comparisons so the fuzzer learns magic bytes (method names, the h2 preface, TLS types).
export RUSTFLAGS="--cfg fuzzing \
  -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares"
export CARGO_TARGET_DIR=fuzz/target

# The fuzz crate builds the proxy with the dependency versions the workspace locks: start
# from the workspace's lock file, to which cargo only adds the fuzzing crates.
cp Cargo.lock fuzz/Cargo.lock

build_start=$SECONDS
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros, which are host
# programs and must not be instrumented.
cargo build --manifest-path fuzz/Cargo.toml --release --target "$triple" \
  "${targets[@]/#/--bin=}"
echo "fuzz: build took $((SECONDS - build_start)) s"

for t in "${targets[@]}"; do
  bin="fuzz/target/$triple/release/$t"
  # New inputs go to a scratch corpus (first directory); the committed seeds are only read.
  work="fuzz/target/corpus/$t"
  mkdir -p "$work" "fuzz/artifacts/$t"
  echo "fuzz: $t for ${seconds} s"
  "$bin" "$work" "fuzz/corpus/$t" \
    -max_total_time="$seconds" \
    -rss_limit_mb=2048 \
    -max_len=4096 \
    -timeout=30 \
    -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/"
done
