#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests.
# Integration tests need root (cgroups, namespaces) and, for images and
# cells, the registry fixture: hack/registry-up.sh && hack/build-test-images.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
