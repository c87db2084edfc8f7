#!/usr/bin/env bash
# Builds target/wheels/azbroker-<version>-py3-none-<platform>.whl with maturin (pyproject.toml):
# the azbroker binary in the wheel's scripts plus the Python package in python/azbroker.
#
# Usage: packaging/build-wheel.sh [--dev]
#   --dev  package the debug build (CI: the one tests/run already made); without it, the release
#          build (the one build-deb.sh and bench/run use).
# Either way cargo builds once: the `cargo build` below and maturin's own call of cargo ask for the
# same profile, features and flags, so maturin finds the binary up to date and only packages it.
# Needs maturin (pip install maturin); MATURIN names its path when it is not on PATH.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
profile=release
[[ ${1-} == --dev ]] && profile=dev
maturin=${MATURIN:-maturin}
command -v "$maturin" >/dev/null || { echo "build-wheel.sh: maturin not found (pip install maturin)" >&2; exit 1; }
cargo build --quiet --profile "$profile" -p azbroker
# `linux`: a wheel for this machine's platform tag (a manylinux tag needs the binary built against
# an older glibc, which a release pipeline does in its own container).
"$maturin" build --profile "$profile" --compatibility linux --out target/wheels
