#!/usr/bin/env bash
# Validates the manifests in this directory:
#   1. against Kubernetes' schemas (kubernetes-validate --strict: unknown fields are errors),
#   2. structurally (check.py): the fields azbroker's design depends on.
# Installs kubernetes-validate into deploy/kubernetes/.venv once (pinned in requirements.txt;
# redone only when that file changes). Usage: deploy/kubernetes/check.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=$here/.venv
stamp=$venv/.stamp
want=$(sha256sum <"$here/requirements.txt" | cut -d' ' -f1)
if [[ ! -x $venv/bin/kubernetes-validate || ! -f $stamp || $(<"$stamp") != "$want" ]]; then
  echo "check.sh: installing kubernetes-validate into $venv" >&2
  python3 -m venv --clear "$venv"
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
  echo "$want" >"$stamp"
fi
"$venv/bin/kubernetes-validate" --strict --quiet "$here"/*.yaml
"$venv/bin/python" "$here/check.py" "$here/azbroker.yaml" "$here/client-pod.example.yaml"
