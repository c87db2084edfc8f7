"""Seeds an offline azure-cli configuration for the "what users do today" benchmark.

Usage: python seed_az.py AUTHORITY_URL TENANT CLIENT_ID CLIENT_SECRET RESOURCE

Runs azure-cli's own `az login --service-principal --skip-subscription-discovery` and
`az account get-access-token --resource RESOURCE` in this process, with Entra ID
(login.microsoftonline.com) routed to the benchmark's local fake authority at AUTHORITY_URL.
azure-cli itself writes everything a logged-in user has in $AZURE_CONFIG_DIR: the profile, the
service-principal entry, MSAL's token cache and MSAL's HTTP cache (tenant discovery). Afterwards an
ordinary `az account get-access-token` runs exactly as it does for a user with a warm login, and
needs no network. Any request to a host that is neither Entra ID nor loopback is refused.
"""

import sys
from urllib.parse import urlsplit

import requests

ENTRA_HOST = "login.microsoftonline.com"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def route_entra_to(local):
    """Sends this process's Entra ID requests to `local`, and makes the answers name Entra ID
    again (the fake authority's discovery documents name its own loopback address), so what
    azure-cli caches is what it would have cached from the real service."""
    local = local.rstrip("/")
    original = requests.Session.request

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        if parts.hostname not in LOOPBACK and parts.hostname != ENTRA_HOST:
            raise RuntimeError("seed_az: refusing a request to " + str(parts.hostname))
        if parts.hostname != ENTRA_HOST:
            return original(self, method, url, *args, **kwargs)
        local_url = local + parts.path + ("?" + parts.query if parts.query else "")
        response = original(self, method, local_url, *args, **kwargs)
        response._content = response.content.replace(local.encode(), b"https://" + ENTRA_HOST.encode())
        response.url = url
        return response

    requests.Session.request = request


def main():
    authority, tenant, client_id, secret, resource = sys.argv[1:6]
    route_entra_to(authority)
    from azure.cli.core import get_default_cli

    for args in (
        ["login", "--service-principal", "--username", client_id, "--password", secret,
         "--tenant", tenant, "--skip-subscription-discovery", "--output", "none"],
        ["account", "get-access-token", "--resource", resource, "--output", "none"],
    ):
        code = get_default_cli().invoke(args)
        if code != 0:
            sys.exit("seed_az: az %s failed with exit code %s" % (args[0], code))


if __name__ == "__main__":
    main()
