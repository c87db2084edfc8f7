#!/usr/bin/env bash
# Builds target/debian/azbroker_<version>_<arch>.deb: the binary, the systemd units, the example
# config, the man page and shell completions (generated from the binary's clap definition).
#
# Usage: packaging/build-deb.sh [--dev]
#   --dev  package a debug build (CI's install test: much faster to build; cargo-deb 3.8 warns
#          that it is meant for release builds); without it, a release build.
# Needs cargo-deb (`cargo install cargo-deb --locked`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
profile=release
dir=target/release
if [[ ${1-} == --dev ]]; then
  profile=dev
  dir=target/debug
fi
command -v cargo-deb >/dev/null || { echo "build-deb.sh: cargo-deb not found (cargo install cargo-deb --locked)" >&2; exit 1; }
cargo build --quiet --profile "$profile" -p azbroker
# Under the profile's directory: cargo-deb maps target/release/ in asset paths to it.
assets=$dir/deb-assets
mkdir -p "$assets"
"$dir/azbroker" man | gzip -9n >"$assets/azbroker.1.gz"
"$dir/azbroker" completions bash >"$assets/azbroker.bash"
"$dir/azbroker" completions zsh >"$assets/_azbroker"
"$dir/azbroker" completions fish >"$assets/azbroker.fish"
fast=()
[[ $profile == dev ]] && fast=(--fast) # a throwaway package: compress quickly
cargo deb --no-build --profile "$profile" "${fast[@]}" -p azbroker --output target/debian/
