#!/bin/sh
# Builds mighook's .deb (cargo-deb) and .rpm (cargo-generate-rpm) into target/packages/,
# with the layout packaging/README.md describes. The two cargo subcommands are installed
# (pinned, --locked) only when missing or at another version, so CI caches them in ~/.cargo.
set -eu
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

die() { echo "package.sh: error: $*" >&2; exit 1; }

# `cargo install` of NAME at VERSION unless the installed NAME already says it is VERSION.
ensure_tool() {
  name=$1 version=$2
  bin=$(command -v "$name" 2>/dev/null || echo "${CARGO_HOME:-$HOME/.cargo}/bin/$name")
  if [ "$("$bin" --version 2>/dev/null)" = "$name $version" ]; then
    return
  fi
  echo "package.sh: installing $name $version"
  cargo install --locked "$name" --version "$version" || die "cargo install $name $version failed"
}

ensure_tool cargo-deb "$CARGO_DEB_VERSION"
ensure_tool cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"

out=target/packages
mkdir -p "$out"
rm -f "$out"/*.deb "$out"/*.rpm
cargo build --release --locked -p mighook
strip target/release/mighook
cargo deb --no-build --no-strip -p mighook --output "$out/"
cargo generate-rpm --output "$out/"
ls -l "$out"
