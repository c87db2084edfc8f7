#!/usr/bin/env bash
# CI's wheel test: builds the wheel from the debug build tests/run made (no second build), then, as
# a non-root user created here, in a fresh virtual environment with only the wheel, azure-identity
# and pytest installed and no Rust on PATH, runs python/tests: the first `azbroker token` starts the
# daemon, concurrent first commands start one, `azbroker.use(PROFILE)` switches a running
# interpreter's ManagedIdentityCredential to that profile's tenant, `azbroker stop` ends the daemon,
# autostart off names `azbroker serve`. Must run as root (useradd, setpriv).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[[ $(id -u) == 0 ]] || { echo "test-wheel.sh: must run as root (useradd, setpriv)" >&2; exit 1; }
tools=target/maturin-venv
[[ -x $tools/bin/maturin ]] || { python3 -m venv "$tools" && "$tools/bin/pip" install --quiet 'maturin>=1.9,<2'; }
"$tools/bin/maturin" --version
rm -rf target/wheels
MATURIN=$tools/bin/maturin packaging/build-wheel.sh --dev
wheel=$(ls target/wheels/azbroker-*.whl)
echo "built $wheel ($(du -h "$wheel" | cut -f1))"

user=azb-wheel
id -u "$user" >/dev/null 2>&1 || useradd --create-home --shell /usr/sbin/nologin "$user"
home=$(getent passwd "$user" | cut -d: -f6)
work=$home/wheel-test
rm -rf "$work"
mkdir -p "$work"
cp "$wheel" "$work/"
cp -r python/tests "$work/tests"
chown -R "$user:" "$work"
# Only what pip needs from this environment; PATH without cargo, rustc or this repository.
keep=()
while IFS='=' read -r name _; do
  [[ $name == PIP_* || ${name,,} == *_proxy ]] && keep+=("$name=${!name}")
done < <(env)
setpriv --reuid="$user" --regid="$user" --init-groups -- env -i HOME="$home" USER="$user" LOGNAME="$user" \
  PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "${keep[@]}" bash -euo pipefail -c '
    cd "$1"
    if command -v cargo || command -v rustc; then echo "Rust is on PATH" >&2; exit 1; fi
    /usr/bin/python3 -m venv venv
    venv/bin/pip install --quiet ./azbroker-*.whl azure-identity pytest
    test -x venv/bin/azbroker
    venv/bin/python -m pytest -q -p no:cacheprovider tests
  ' _ "$work"
