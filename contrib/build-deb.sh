#!/usr/bin/env bash
# Builds the Debian package: the release binary, the shell completions it generates
# (target/completions/), then `cargo deb --no-build` with [package.metadata.deb] of Cargo.toml.
# Prints the .deb's path on the last line. Needs cargo-deb (cargo install cargo-deb --locked)
# and dpkg-dev (dpkg-shlibdeps, for the Depends line).
#   contrib/build-deb.sh && dpkg -i target/debian/pairsync_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 1
fi

cargo build --release --locked
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=$target/release/pairsync

# The completions go where the assets in Cargo.toml name them, whatever CARGO_TARGET_DIR says.
mkdir -p target/completions
"$bin" completions bash > target/completions/pairsync.bash
"$bin" completions zsh > target/completions/_pairsync
"$bin" completions fish > target/completions/pairsync.fish

# --no-build: cargo deb takes the binary built above (from CARGO_TARGET_DIR too); cargo's
# `strip = true` already stripped it.
out=$(cargo deb --no-build --locked)
echo "$out" | tail -n 1
