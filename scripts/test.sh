#!/usr/bin/env bash
# The whole test suite: set up, then formatting, lints and every test in the
# workspace. Exits non-zero when anything fails. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --workspace
echo "== all tests passed"
