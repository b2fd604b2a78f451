#!/usr/bin/env bash
# The whole test suite: set up (system packages, Rust, the test models),
# then formatting, lints, every test in the workspace, and a compile check
# of the Metal build for Apple silicon. Exits non-zero when anything fails.
# CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
scripts/fetch-models.sh
# The cross-checks against PyTorch (crates/ml: the vision network's logits,
# the legacy .pth reader) run a Python with torch: a pinned venv made once
# (bench/pytorch/venv.sh torch, ~4 GB in ~/.cache/hearth/torch-venv). Under
# CI those tests fail when it is missing; elsewhere they skip.
if [ -z "${HEARTH_TORCH_PYTHON:-}" ]; then
    HEARTH_TORCH_PYTHON="$(bash bench/pytorch/venv.sh torch)"
fi
export HEARTH_TORCH_PYTHON

# A fresh clone is built once: incremental caches would only fill the disk.
if [ "${CI:-}" = "true" ]; then
    export CARGO_INCREMENTAL=0
fi
report_disk() { df -h . | tail -1; du -sh target 2>/dev/null || true; }

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --workspace
report_disk
echo "== Metal build check (aarch64-apple-darwin)"
rustup target list --installed | grep -q '^aarch64-apple-darwin$' || rustup target add aarch64-apple-darwin
# The ML crate, where the Metal code is, without the hub client: TLS stacks
# (the hub client's, and the federation client's ring in hearth-cli) compile
# C that needs the macOS SDK, which this machine does not have.
cargo check --locked --target aarch64-apple-darwin -p hearth-ml --no-default-features --features metal
echo "== phone build check (aarch64-linux-android, aarch64-apple-ios): the library crates that need no C toolchain for the target"
for target in aarch64-linux-android aarch64-apple-ios; do
    rustup target list --installed | grep -q "^$target\$" || rustup target add "$target"
done
# Left out (docs/mobile.md): on Android, hearth-store compiles its bundled
# SQLite and, with the app and hearth-personalize, the federation client's
# ring, which need the NDK's clang; on iOS, ring needs Xcode's SDK.
cargo check --locked --target aarch64-linux-android -p hearth-progress -p hearth-ledger -p hearth-fed -p hearth-ml
cargo check --locked --target aarch64-apple-ios -p hearth-progress -p hearth-ledger -p hearth-fed -p hearth-ml -p hearth-store -p hearth-ask
echo "== app front end: lint (rules of hooks), type check, build, unit tests (vitest, mocked IPC)"
setup_app
npm run lint
npm run ui:build
npm test
echo "== app end to end: the real app (debug build, front end embedded) driven by tauri-driver under Xvfb"
# Built once; the workspace build above shares every dependency but Tauri
# itself. The .deb bundle (npm run build) is a release build of everything
# and is not built here (about 10 more minutes on two cores). The
# federation_peer example is the e2e test's federation: a real server on
# 127.0.0.1 and a second device.
cargo build --locked -p hearth-app --features custom-protocol --bin hearth-app --example federation_peer
npm run e2e
report_disk
echo "== all tests passed"
