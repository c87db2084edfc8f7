#!/usr/bin/env bash
# Install the real SDK clients that judge azbroker's protocol compatibility:
#   tests/clients/.venv               Python venv from python/requirements.txt (pinned)
#   tests/clients/.venv-azureml       azureml-core from python/requirements-azureml.txt (pinned)
#   tests/clients/.venv-azcli         the Azure CLI from python/requirements-azcli.txt (pinned)
#   tests/clients/node/node_modules   npm ci from node/package-lock.json (pinned)
#   tests/clients/rust/target         the Rust azure_identity client (cargo, rust/Cargo.lock)
#   tests/clients/go/bin              the Go judge (go build; go/go.mod + go.sum pin azidentity
#                                     and MSAL Go), built once
#   tests/clients/java/target         the Java judge: dependencies resolved once by Maven
#                                     (azure-sdk-bom 1.3.8 in java/pom.xml) into target/lib,
#                                     MiClient.java compiled by javac into target/classes
#
# Idempotent and quiet: each half is redone only when the hash of its pin file (and of the
# interpreter's version) differs from the stamp written after its last successful install,
# so a re-run costs well under a second. Prints one line per half it actually installs.
# Caches are the tools' usual ones (~/.cache/pip, ~/.npm); nothing else outside the repo.
#
# Usage: tests/clients/install.sh [--force]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
force=0
case "${1-}" in
  --force) force=1 ;;
  "") ;;
  *) echo "usage: $0 [--force]" >&2; exit 64 ;;
esac

die() { echo "install.sh: $*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH ($2)"; }

# stamp_of VERSION FILE...: one hash over a tool's version string and the files' contents.
stamp_of() {
  local version=$1 file; shift
  {
    echo "$version"
    for file; do sha256sum <"$file"; done
  } | sha256sum | cut -d' ' -f1
}

# Serialise concurrent runs (e.g. two test processes starting at once).
exec 9>"$here/.install.lock"
flock 9

install_python() {
  need python3 "CPython >= 3.9 is required"
  local venv=$here/.venv req=$here/python/requirements.txt
  local stamp_file=$venv/.azbroker-install-stamp want have=""
  want=$(stamp_of "$(python3 -c 'import sys; print(sys.version)')" "$req")
  [[ -f $stamp_file ]] && have=$(<"$stamp_file")
  # The venv must also still run (a replaced system python breaks an old venv).
  if ((force == 0)) && [[ $have == "$want" ]] && "$venv/bin/python" -c '' 2>/dev/null; then
    return 0
  fi
  echo "install.sh: python clients: creating $venv from python/requirements.txt" >&2
  python3 -m venv --clear "$venv"
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$venv/bin/python" -m pip install --quiet --requirement "$req"
  "$venv/bin/python" -c 'import azure.identity, azure.identity.aio, msal, aiohttp, requests' ||
    die "python clients installed but do not import"
  echo "$want" >"$stamp_file"
}

install_node() {
  need node "Node.js >= 20 is required"
  need npm "npm is required"
  local dir=$here/node lock=$here/node/package-lock.json
  local stamp_file=$dir/node_modules/.azbroker-install-stamp want have=""
  [[ -f $lock ]] || die "$lock is missing"
  # package.json is hashed too: npm ci refuses a lock file out of sync with it.
  want=$(stamp_of "$(node --version)" "$lock" "$dir/package.json")
  [[ -f $stamp_file ]] && have=$(<"$stamp_file")
  if ((force == 0)) && [[ $have == "$want" ]]; then
    return 0
  fi
  echo "install.sh: node clients: npm ci in $dir" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
  (cd "$dir" && node -e 'import("@azure/identity").then(() => {}, (e) => { console.error(e); process.exit(1); })') ||
    die "node clients installed but @azure/identity does not import"
  echo "$want" >"$stamp_file"
}

# install_venv DIR REQUIREMENTS IMPORT-CHECK: a venv with exactly the pinned set (--no-deps:
# the file lists every package, so pip resolves nothing; --no-compile: byte-compiling all of
# azure-cli's modules up front takes minutes, and Python compiles the few a run imports).
install_venv() {
  local venv=$1 req=$2 check=$3
  local stamp_file=$venv/.azbroker-install-stamp want have=""
  want=$(stamp_of "$(python3 -c 'import sys; print(sys.version)')" "$req")
  [[ -f $stamp_file ]] && have=$(<"$stamp_file")
  if ((force == 0)) && [[ $have == "$want" ]] && "$venv/bin/python" -c '' 2>/dev/null; then
    return 0
  fi
  echo "install.sh: creating $venv from ${req#"$here"/}" >&2
  local started=$SECONDS
  python3 -m venv --clear "$venv"
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$venv/bin/python" -m pip install --quiet --no-deps --no-compile --requirement "$req"
  "$venv/bin/python" -c "$check" || die "$venv installed but does not import"
  echo "install.sh: $venv ready in $((SECONDS - started)) s" >&2
  echo "$want" >"$stamp_file"
}

install_rust() {
  need cargo "the Rust toolchain builds the azure_identity client"
  local dir=$here/rust stamp_file=$here/rust/target/.azbroker-install-stamp want have=""
  want=$(stamp_of "$(cargo --version)" "$dir/Cargo.toml" "$dir/Cargo.lock" "$dir/src/main.rs")
  [[ -f $stamp_file ]] && have=$(<"$stamp_file")
  if ((force == 0)) && [[ $have == "$want" ]] && [[ -x $dir/target/debug/azbroker-rust-mi-client ]]; then
    return 0
  fi
  echo "install.sh: rust client: cargo build in $dir" >&2
  local started=$SECONDS
  # Its own target dir: the client is not part of the azbroker workspace.
  (cd "$dir" && CARGO_TARGET_DIR="$dir/target" cargo build --locked --quiet)
  echo "install.sh: rust client ready in $((SECONDS - started)) s" >&2
  echo "$want" >"$stamp_file"
}

install_go() {
  need go "the Go toolchain builds the azidentity / MSAL Go client"
  local dir=$here/go bin=$here/go/bin/go-mi-client stamp_file=$here/go/bin/.azbroker-install-stamp
  local want have=""
  want=$(stamp_of "$(go version)" "$dir/go.mod" "$dir/go.sum" "$dir/main.go")
  [[ -f $stamp_file ]] && have=$(<"$stamp_file")
  if ((force == 0)) && [[ $have == "$want" ]] && [[ -x $bin ]]; then
    return 0
  fi
  echo "install.sh: go client: go build in $dir" >&2
  local started=$SECONDS
  # -mod=readonly: go.mod and go.sum are the pins; the build never rewrites them.
  # -buildvcs=false: no git stamping (a fresh clone owned by another user makes git refuse).
  (cd "$dir" && GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -o "$bin" .)
  echo "install.sh: go client ready in $((SECONDS - started)) s" >&2
  echo "$want" >"$stamp_file"
}

install_java() {
  need java "Java >= 17 runs the azure-identity / MSAL4J client"
  need javac "a JDK >= 17 compiles the Java client"
  need mvn "Maven resolves the Java client's dependencies"
  local dir=$here/java src=$here/java/src/main/java/azbroker/MiClient.java
  local stamp_file=$here/java/target/.azbroker-install-stamp want have=""
  want=$(stamp_of "$(javac -version 2>&1)" "$dir/pom.xml" "$src")
  [[ -f $stamp_file ]] && have=$(<"$stamp_file")
  if ((force == 0)) && [[ $have == "$want" ]] && [[ -f $dir/target/classes/azbroker/MiClient.class ]]; then
    return 0
  fi
  echo "install.sh: java client: mvn dependency:copy-dependencies + javac in $dir" >&2
  local started=$SECONDS
  rm -rf "$dir/target/lib" "$dir/target/classes"
  mkdir -p "$dir/target"
  # Maven's output (colour resets even with --quiet) goes to a log, shown only on failure.
  (cd "$dir" && mvn --batch-mode --quiet dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory=target/lib >target/mvn.log 2>&1) ||
    { cat "$dir/target/mvn.log" >&2; die "mvn could not resolve the Java client's dependencies"; }
  javac --release 17 -d "$dir/target/classes" -cp "$dir/target/lib/*" "$src"
  echo "install.sh: java client ready in $((SECONDS - started)) s" >&2
  echo "$want" >"$stamp_file"
}

# The link-local tests create network namespaces (`ip netns`), which needs iproute2.
install_iproute2() {
  command -v ip >/dev/null 2>&1 && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: installing iproute2 (apt-get)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
  else
    die "'ip' (iproute2) is missing; install it (the link-local tests use network namespaces)"
  fi
}

install_iproute2
install_python
install_venv "$here/.venv-azureml" "$here/python/requirements-azureml.txt" \
  'import azureml.core.authentication, msrestazure'
install_venv "$here/.venv-azcli" "$here/python/requirements-azcli.txt" \
  'import azure.cli.core, azure.mgmt.resource'
install_node
install_rust
install_go
install_java
