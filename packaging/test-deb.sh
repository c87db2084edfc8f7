#!/usr/bin/env bash
# CI's package test: builds the .deb from the debug build, installs it with dpkg (as root),
# checks what it installed, runs the installed binary and verifies the installed units, then
# removes and purges it again (refuses to run if azbroker is installed for real). Prints "N passed, N failed"; exits 1 on any failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[[ $(id -u) == 0 ]] || { echo "test-deb.sh: must run as root (dpkg -i)" >&2; exit 1; }
if [[ $(dpkg-query -W -f='${Status}' azbroker 2>/dev/null) == *" installed" ]]; then
  echo "test-deb.sh: azbroker is already installed on this machine; not touching it" >&2
  exit 1
fi
packaging/build-deb.sh --dev
deb=$(ls -t target/debian/azbroker_*.deb | sed -n 1p)
passed=0 failed=0
check() {
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then passed=$((passed + 1)); echo "ok     $what"
  else failed=$((failed + 1)); echo "FAILED $what"; fi
}
dpkg -i "$deb" >/dev/null
trap 'dpkg --purge azbroker >/dev/null 2>&1 || true' EXIT
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p)
check "azbroker --version prints $version" bash -c "[[ \$(/usr/bin/azbroker --version) == 'azbroker $version' ]]"
for f in /usr/lib/systemd/system/azbroker.service /usr/lib/systemd/system/azbroker.socket \
  /usr/lib/systemd/user/azbroker.service /usr/lib/systemd/user/azbroker.socket \
  /usr/share/doc/azbroker/examples/config.toml /usr/share/man/man1/azbroker.1.gz \
  /usr/share/bash-completion/completions/azbroker; do
  check "installs $f" test -s "$f"
done
check "the example config is valid" /usr/bin/azbroker --config /usr/share/doc/azbroker/examples/config.toml check-config
check "the installed units verify" bash -c \
  '[[ -z $(systemd-analyze verify --man=no /usr/lib/systemd/system/azbroker.service /usr/lib/systemd/system/azbroker.socket 2>&1) ]]'
check "the man page renders" bash -c 'zcat /usr/share/man/man1/azbroker.1.gz | grep -q "azbroker doctor"'
dpkg -r azbroker >/dev/null
check "removal takes the binary away" test ! -e /usr/bin/azbroker
dpkg --purge azbroker >/dev/null
trap - EXIT
check "purge leaves no trace in dpkg" bash -c '! dpkg-query -W azbroker'
echo "$passed passed, $failed failed"
((failed == 0))
