#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test (real processes and network
# namespaces need root; those tests fail loudly without it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
scripts/check-purity.sh
cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --doc --locked
# Coverage-guided fuzzing of the proxy's first-bytes path, 15 s per target (docs/fuzzing.md).
scripts/fuzz.sh 15
# Manifests through parsing, injection, defaulting and validation (docs/reliability.md).
scripts/fuzz.sh 15 manifest
# Churn with kills at a small size; nothing may be left behind (docs/reliability.md).
scripts/soak.sh 40 10
