#!/usr/bin/env python3
"""`az login --identity` with the real Azure CLI, reported as one JSON line like mi_client.py.

    az_login.py --arm URL --ca-file PEM --resource R [--client-id ID] [--timeout SECONDS]
                [--allow-non-loopback] [--client NAME]

The managed-identity environment (IDENTITY_ENDPOINT/..., as `azbroker env` prints it) is passed
through untouched. After the token, az lists subscriptions at the cloud's Resource Manager
endpoint, so the run registers a cloud whose ARM endpoint is the test's fake (--arm, over HTTPS
trusted through --ca-file) in a private AZURE_CONFIG_DIR, logs in, then asks for an access token
for R (again through the managed identity). Prints

    {"ok":true,"client":"az-login-identity","tid":...,"aud":...,"login_tenant":...,"expires_on":N}
    {"ok":false,"client":"az-login-identity","error":"..."}                       (exit 1)

and never the token.
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time

CLIENT = "az-login-identity"


def emit(obj, code):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    sys.exit(code)


def fail(msg):
    emit({"ok": False, "client": CLIENT, "error": str(msg)[:4000]}, 1)


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--client", default=CLIENT)
    p.add_argument("--arm", required=True)
    p.add_argument("--ca-file", required=True)
    p.add_argument("--resource", required=True)
    p.add_argument("--client-id")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--allow-non-loopback", action="store_true")
    args = p.parse_args()
    deadline = time.monotonic() + args.timeout
    az = os.path.join(os.path.dirname(sys.executable), "az")
    config_dir = tempfile.mkdtemp(prefix="azbroker-az-")
    env = dict(os.environ)
    env.update(
        AZURE_CONFIG_DIR=config_dir,
        AZURE_CORE_COLLECT_TELEMETRY="false",
        AZURE_CORE_SURVEY_MESSAGE="false",
        AZURE_CORE_NO_COLOR="true",
        AZURE_CORE_ONLY_SHOW_ERRORS="true",
        REQUESTS_CA_BUNDLE=args.ca_file,
    )

    def run(*argv):
        left = deadline - time.monotonic()
        if left <= 0:
            fail(f"Timeout: no token within {args.timeout:g} s")
        try:
            out = subprocess.run([az, *argv], env=env, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            fail(f"Timeout: az {argv[0]} did not finish within {args.timeout:g} s")
        if out.returncode != 0:
            fail(f"az {' '.join(argv[:2])} failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout

    run("cloud", "register", "--name", "AzbrokerTest", "--skip-endpoint-discovery",
        "--endpoint-resource-manager", args.arm,
        "--endpoint-active-directory", "https://login.microsoftonline.com",
        "--endpoint-active-directory-resource-id", "https://management.core.windows.net/",
        "--endpoint-active-directory-graph-resource-id", "https://graph.windows.net/")
    run("cloud", "set", "--name", "AzbrokerTest")
    login = ["login", "--identity", "--output", "json"]
    if args.client_id:
        login += ["--client-id", args.client_id]
    accounts = json.loads(run(*login))
    login_tenant = accounts[0]["tenantId"] if accounts else None
    token = json.loads(run("account", "get-access-token", "--resource", args.resource, "--output", "json"))
    c = claims(token["accessToken"])
    if c.get("tid") != login_tenant:
        fail(f"Mismatch: az logged in to tenant {login_tenant} but the token is from {c.get('tid')}")
    emit({"ok": True, "client": args.client, "tid": c.get("tid"), "aud": c.get("aud"), "oid": c.get("oid"),
          "login_tenant": login_tenant, "expires_on": int(token.get("expires_on", 0))}, 0)


if __name__ == "__main__":
    main()
