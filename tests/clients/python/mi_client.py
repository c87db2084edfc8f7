#!/usr/bin/env python3
"""Get one managed-identity token with a real Python SDK client and report it as one JSON line.

Used by azbroker's end-to-end tests: the test starts the daemon, puts exactly what
`azbroker env` prints into this process's environment, and runs

    mi_client.py --client NAME --resource RESOURCE [--client-id ID] [--timeout SECONDS]
                 [--allow-non-loopback] [--claims-challenge JSON]

Configuration comes only from the environment (IDENTITY_ENDPOINT/IDENTITY_HEADER,
MSI_ENDPOINT/MSI_SECRET, AZURE_POD_IDENTITY_AUTHORITY_HOST, ...) and these flags; the
script never sets endpoint variables itself. It refuses to run (ok:false, "Refused: ...")
when the environment would send the SDK anywhere but loopback, e.g. to the real IMDS
address because no endpoint variable is set, unless --allow-non-loopback is given. It prints exactly one line on stdout:

    {"ok":true,"client":NAME,"tid":...,"aud":...,"oid":...,"expires_on":<int>, ...}
    {"ok":false,"client":NAME,"error":"<type>: <message>"}          (exit status 1)

and never the token itself (only a short SHA-256 prefix, "token_sha256", so a test can
match it against what the authority minted). Claims are read from the JWT payload
without verifying the signature.

With --claims-challenge (msal-mi only) the client declares the capability "cp1", gets a
token, then asks again with claims_challenge=JSON, the path MSAL Python takes after a
resource rejected its token with a claims challenge (token revocation). The line then
describes the second token and adds the first's "first_sha256" and "first_tid";
"token_source" says where MSAL took each from ("first_token_source" for the first).
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import sys
import threading
import time

CLIENTS = (
    "azure-identity-mi",
    "azure-identity-mi-async",
    "azure-identity-dac",
    "azure-identity-dac-async",
    "msal-mi",
    "azureml-core-msi",
)

# Per-HTTP-request read timeout handed to the SDKs (seconds). Loopback answers come in
# milliseconds; this only stops a hung server from stalling a run for azure-core's 300 s.
READ_TIMEOUT = 20

_print_lock = threading.Lock()
_printed = False


def emit(obj, code):
    """Print the single result line once (main thread or watchdog, whichever is first) and exit."""
    global _printed
    with _print_lock:
        if not _printed:
            _printed = True
            sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
            sys.stdout.flush()
    # os._exit: no interpreter teardown, so a stuck SDK thread or connection cannot delay exit.
    sys.stderr.flush()
    os._exit(code)


def fail(client, exc_or_msg):
    if isinstance(exc_or_msg, BaseException):
        msg = f"{type(exc_or_msg).__name__}: {exc_or_msg}"
    else:
        msg = str(exc_or_msg)
    emit({"ok": False, "client": client, "error": msg[:4000]}, 1)


def jwt_claims(token):
    """Decode the payload of a JWT without verification (base64url, padding restored)."""
    parts = token.split(".")
    if len(parts) < 2:
        raise ValueError("access token is not a JWT (no payload segment)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    if not isinstance(claims, dict):
        raise ValueError("JWT payload is not a JSON object")
    return claims


def success(client, token, expires_on, **extra):
    claims = jwt_claims(token)
    out = {
        "ok": True,
        "client": client,
        "tid": claims.get("tid"),
        "aud": claims.get("aud"),
        "oid": claims.get("oid"),
        "expires_on": int(expires_on),
        "token_sha256": hashlib.sha256(token.encode("utf-8")).hexdigest()[:16],
    }
    out.update(extra)
    emit(out, 0)


# Environment variables holding managed-identity endpoint URLs. When the environment selects
# no dialect, the SDKs fall back to IMDS on 169.254.169.254, which is not a test address.
ENDPOINT_VARS = ("IDENTITY_ENDPOINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST")
LOOPBACK_HOSTS = ("localhost", "::1")


def non_loopback_reason(client):
    """Why this run would send traffic off the loopback interface, or None if it would not."""
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    env = {v: os.environ.get(v) for v in ENDPOINT_VARS + ("IDENTITY_HEADER", "MSI_SECRET")}
    # Dialect selection as in PROTOCOLS.md section 2: does something other than default IMDS
    # win? MSI_ENDPOINT alone is Cloud Shell for azure-identity but falls to IMDS in MSAL Python.
    if client == "azureml-core-msi":
        # msrestazure reads MSI_ENDPOINT only (PROTOCOLS.md section 2.7), else calls IMDS.
        selected = env["MSI_ENDPOINT"]
    else:
        selected = (
            env["AZURE_POD_IDENTITY_AUTHORITY_HOST"]
            or (env["IDENTITY_ENDPOINT"] and (env["IDENTITY_HEADER"] or env["IMDS_ENDPOINT"]))
            or (env["MSI_ENDPOINT"] and (env["MSI_SECRET"] or client != "msal-mi"))
        )
    if not selected:
        return "the environment selects no endpoint, so the SDK would call IMDS at 169.254.169.254"
    for var in ENDPOINT_VARS:
        if not env[var]:
            continue
        host = urlsplit(env[var]).hostname or ""
        try:
            loopback = host in LOOPBACK_HOSTS or ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return f"{var} points at {host or env[var]!r}, not a loopback address"
    return None


def keep_loopback_off_proxies():
    """If a proxy is configured, make sure loopback requests still go direct."""
    if not any(os.environ.get(v) for v in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    for var in ("NO_PROXY", "no_proxy"):
        current = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join(current + ["127.0.0.1", "localhost", "::1"])


def scope_of(resource):
    # Exactly resource + "/.default", no slash normalisation: a resource with a trailing
    # slash (https://management.core.windows.net/) becomes ...//.default, as SDK users write it.
    return resource + "/.default"


def run_identity_mi(args):
    from azure.identity import ManagedIdentityCredential

    cred = ManagedIdentityCredential(client_id=args.client_id or None, read_timeout=READ_TIMEOUT)
    try:
        tok = cred.get_token(scope_of(args.resource))
    finally:
        cred.close()
    success(args.client, tok.token, tok.expires_on)


def run_identity_mi_async(args):
    from azure.identity.aio import ManagedIdentityCredential

    async def go():
        cred = ManagedIdentityCredential(client_id=args.client_id or None, read_timeout=READ_TIMEOUT)
        try:
            return await cred.get_token(scope_of(args.resource))
        finally:
            await cred.close()

    tok = asyncio.run(go())
    success(args.client, tok.token, tok.expires_on)


# Every credential of DefaultAzureCredential except managed identity, so that nothing else
# in the chain (a logged-in az CLI, a service principal in the environment, VS Code, a
# broker) can answer by accident. Managed identity stays inside the chain, so the IMDS
# probe that DefaultAzureCredential performs is still exercised.
DAC_EXCLUDES = (
    "exclude_environment_credential",
    "exclude_workload_identity_credential",
    "exclude_shared_token_cache_credential",
    "exclude_visual_studio_code_credential",
    "exclude_cli_credential",
    "exclude_powershell_credential",
    "exclude_developer_cli_credential",
    "exclude_interactive_browser_credential",
    "exclude_broker_credential",
)


def run_identity_dac(args):
    from azure.identity import DefaultAzureCredential

    kwargs = {name: True for name in DAC_EXCLUDES}
    if args.client_id:
        # Only when given: an explicit None would stop DefaultAzureCredential from using
        # AZURE_CLIENT_ID from the environment, which real callers rely on.
        kwargs["managed_identity_client_id"] = args.client_id
    cred = DefaultAzureCredential(read_timeout=READ_TIMEOUT, **kwargs)
    try:
        tok = cred.get_token(scope_of(args.resource))
        used = type(getattr(cred, "_successful_credential", None)).__name__
    finally:
        cred.close()
    if used != "ManagedIdentityCredential":
        fail(args.client, f"WrongCredential: token came from {used}, not ManagedIdentityCredential")
    success(args.client, tok.token, tok.expires_on, credential=used)


def run_identity_dac_async(args):
    from azure.identity.aio import DefaultAzureCredential

    # The async chain has no interactive-browser or broker credential to exclude.
    async_excludes = [n for n in DAC_EXCLUDES if n not in ("exclude_interactive_browser_credential", "exclude_broker_credential")]
    kwargs = {name: True for name in async_excludes}
    if args.client_id:
        kwargs["managed_identity_client_id"] = args.client_id

    async def go():
        cred = DefaultAzureCredential(read_timeout=READ_TIMEOUT, **kwargs)
        try:
            tok = await cred.get_token(scope_of(args.resource))
            return tok, type(getattr(cred, "_successful_credential", None)).__name__
        finally:
            await cred.close()

    tok, used = asyncio.run(go())
    if used != "ManagedIdentityCredential":
        fail(args.client, f"WrongCredential: token came from {used}, not ManagedIdentityCredential")
    success(args.client, tok.token, tok.expires_on, credential=used)


def timeout_session():
    """A requests.Session whose calls carry a default timeout (MSAL itself passes none)."""
    import requests

    class Session(requests.Session):
        def request(self, method, url, **kwargs):
            kwargs.setdefault("timeout", READ_TIMEOUT)
            return super().request(method, url, **kwargs)

    return Session()


def run_msal_mi(args):
    import msal

    if args.client_id:
        identity = msal.UserAssignedManagedIdentity(client_id=args.client_id)
    else:
        identity = msal.SystemAssignedManagedIdentity()
    # Same construction as az CLI's `az login --identity` (a plain requests.Session, no retry);
    # a client that handles claims challenges says so with the capability "cp1" (xms_cc).
    capabilities = ["cp1"] if args.claims_challenge else None
    app = msal.ManagedIdentityClient(
        identity, http_client=timeout_session(), client_capabilities=capabilities
    )
    result = msal_token(args, app.acquire_token_for_client(resource=args.resource))
    extra = {}
    if args.claims_challenge:
        first = result
        result = msal_token(
            args,
            app.acquire_token_for_client(resource=args.resource, claims_challenge=args.claims_challenge),
            "with claims challenge",
        )
        extra["first_sha256"] = hashlib.sha256(first["access_token"].encode("utf-8")).hexdigest()[:16]
        extra["first_tid"] = jwt_claims(first["access_token"]).get("tid")
        extra["first_token_source"] = first.get("token_source")
    expires_on = int(time.time()) + int(result.get("expires_in", 0))
    if "token_source" in result:
        extra["token_source"] = result["token_source"]
    success(args.client, result["access_token"], expires_on, **extra)


def msal_token(args, result, when=""):
    """MSAL's result dict when it holds a token; otherwise the run fails with its error."""
    if isinstance(result, dict) and result.get("access_token"):
        return result
    if isinstance(result, dict):
        err = result.get("error") or "error"
        desc = result.get("error_description") or json.dumps(
            {k: v for k, v in result.items() if k != "access_token"}
        )
    else:
        err, desc = "NoResult", repr(result)
    fail(args.client, f"{err}{f' ({when})' if when else ''}: {desc}")


def run_azureml_msi(args):
    # What Workspace(auth=MsiAuthentication()) does: an ARM token for the cloud's
    # management resource (https://management.core.windows.net/), via msrestazure.
    from azureml.core.authentication import MsiAuthentication

    identity_config = {"client_id": args.client_id} if args.client_id else None
    header = MsiAuthentication(identity_config=identity_config).get_authentication_header()
    token = header["Authorization"].split(" ", 1)[1]
    claims = jwt_claims(token)
    success(args.client, token, claims.get("exp", 0), resource_used="https://management.core.windows.net/")


RUNNERS = {
    "azure-identity-mi": run_identity_mi,
    "azure-identity-mi-async": run_identity_mi_async,
    "azure-identity-dac": run_identity_dac,
    "azure-identity-dac-async": run_identity_dac_async,
    "msal-mi": run_msal_mi,
    "azureml-core-msi": run_azureml_msi,
}


class _Parser(argparse.ArgumentParser):
    """Usage errors are results too: one JSON line, exit status 1."""

    def error(self, message):
        client = "unknown"
        if "--client" in sys.argv[:-1]:
            client = sys.argv[sys.argv.index("--client") + 1]
        fail(client, f"UsageError: {message}")


def main():
    parser = _Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--client", required=True, choices=CLIENTS)
    parser.add_argument("--resource", required=True, help="v1 resource, e.g. https://management.azure.com")
    parser.add_argument("--client-id", default=None, help="user-assigned identity client id (selector)")
    parser.add_argument("--timeout", type=float, default=60.0, help="hard limit for the whole run, seconds")
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow endpoints off 127.0.0.0/8 (e.g. the broker's opt-in 169.254.169.254 listener)",
    )
    parser.add_argument(
        "--claims-challenge",
        default=None,
        metavar="JSON",
        help="msal-mi: get a token, then ask again with this claims challenge (token revocation)",
    )
    args = parser.parse_args()
    if args.claims_challenge is not None:
        if args.client != "msal-mi":
            parser.error("--claims-challenge is for msal-mi")
        try:
            json.loads(args.claims_challenge)
        except ValueError as exc:
            parser.error(f"--claims-challenge is not JSON: {exc}")

    reason = None if args.allow_non_loopback else non_loopback_reason(args.client)
    if reason:
        fail(args.client, f"Refused: {reason} (tests only talk to loopback; see --allow-non-loopback)")
    keep_loopback_off_proxies()

    # Hard bound on the run, whatever the SDK's retry policy does (IMDS 410 backoff alone is 75 s).
    watchdog = threading.Timer(
        args.timeout, fail, (args.client, f"Timeout: no token within {args.timeout:g} s")
    )
    watchdog.daemon = True
    watchdog.start()

    try:
        RUNNERS[args.client](args)
    except SystemExit:
        raise
    except BaseException as exc:  # report every failure as JSON, including SDK errors
        fail(args.client, exc)
    fail(args.client, "InternalError: client runner returned without a result")


if __name__ == "__main__":
    main()
