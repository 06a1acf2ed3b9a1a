#!/bin/sh
# The whole test suite, exactly as CI runs it: install what the tests need,
# build the workspace (the fake libnvidia-ml.so.1 is a cdylib that `cargo test`
# does not build), then run every test. Needs root for the end-to-end tests.
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
scripts/install-deps.sh
# Style and lints are part of the suite: a miss fails the run like a failing test.
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked
cargo test --workspace --locked
# Every criterion bench once, with its checks (they are not part of `cargo test` by default).
cargo test --bench stages --locked
# Every cargo-fuzz target for 10 s (the long campaigns are recorded in docs/SECURITY.md).
scripts/fuzz-smoke.sh 10
