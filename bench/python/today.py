"""What Python clients do today, timed: one token per call, in a cold or a warm process.

Usage: python today.py MODE RESOURCE [CALLS]

  cli-cold   AzureCliCredential().get_token once (this process is the cold one; the benchmark
             times the whole process from the outside)
  mi-cold    ManagedIdentityCredential().get_token once, through the broker
             (IDENTITY_ENDPOINT / IDENTITY_HEADER in the environment)
  cli-warm   CALLS x AzureCliCredential().get_token in this running process
  mi-warm    CALLS x ManagedIdentityCredential().get_token, a new credential each call (so each
             call reaches the broker rather than the credential's in-memory cache)
  http-warm  CALLS x a plain GET of IDENTITY_ENDPOINT on one keep-alive requests.Session

Prints one JSON line: {"mode": ..., "calls_ms": [...]} (the warm modes time each call here).
"""

import json
import os
import sys
import time


def scope_of(resource):
    return resource + "/.default" if not resource.endswith("/.default") else resource


def main():
    mode, resource = sys.argv[1], sys.argv[2]
    calls = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    scope = scope_of(resource)
    times = []
    if mode in ("cli-cold", "cli-warm"):
        from azure.identity import AzureCliCredential

        for _ in range(calls):
            t = time.perf_counter()
            AzureCliCredential(process_timeout=60).get_token(scope)
            times.append((time.perf_counter() - t) * 1e3)
    elif mode in ("mi-cold", "mi-warm"):
        from azure.identity import ManagedIdentityCredential

        for _ in range(calls):
            t = time.perf_counter()
            ManagedIdentityCredential().get_token(scope)
            times.append((time.perf_counter() - t) * 1e3)
    elif mode == "http-warm":
        import requests

        session = requests.Session()
        session.trust_env = False
        url = os.environ["IDENTITY_ENDPOINT"]
        headers = {"X-IDENTITY-HEADER": os.environ["IDENTITY_HEADER"]}
        params = {"api-version": "2019-08-01", "resource": resource}
        for _ in range(calls):
            t = time.perf_counter()
            r = session.get(url, params=params, headers=headers, timeout=10)
            r.raise_for_status()
            r.json()["access_token"]
            times.append((time.perf_counter() - t) * 1e3)
    else:
        sys.exit("unknown mode " + mode)
    print(json.dumps({"mode": mode, "calls_ms": times}))


if __name__ == "__main__":
    main()
