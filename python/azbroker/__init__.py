"""azbroker from Python: switch a running process (a notebook kernel) to a profile of the local
azbroker daemon, or get a bearer token.

    import azbroker
    azbroker.use("ml")          # the next ManagedIdentityCredential() gets profile "ml"'s tenant
    tok = azbroker.token("https://management.azure.com/")

Everything goes through the ``azbroker`` binary installed with this package, found in this
environment's scripts directory (never looked up on ``PATH``, so a venv's python works without
activating the venv). The binary starts the daemon when none runs (see the README), so nothing
here talks to the network or re-implements the daemon. Standard library only.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

__all__ = ["AzbrokerError", "DIALECTS", "Token", "binary", "token", "use", "variables"]

#: The client dialects ``use()`` can set up (``azbroker env --dialect``).
DIALECTS = ("app-service", "azure-ml", "cloud-shell", "imds", "arc", "service-fabric", "azd", "all")

#: Every variable some dialect sets. ``use()`` removes those the new dialect does not set, so no
#: variable of an earlier ``use()`` (maybe another profile's) outranks the new ones in an SDK.
MANAGED_VARIABLES = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "DEFAULT_IDENTITY_CLIENT_ID",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZD_AUTH_ENDPOINT",
    "AZD_AUTH_KEY",
)

#: How long one call of the binary may take: a daemon start (at most 10 s) and a token fetch.
TIMEOUT_SECONDS = 120.0


class AzbrokerError(RuntimeError):
    """The binary failed; the message is its own error (which never holds a secret)."""


@dataclass(frozen=True)
class Token:
    """A bearer token from ``azbroker token``. Its ``repr`` never shows the token itself."""

    access_token: str = field(repr=False)
    expires_on: int
    resource: str
    token_type: str
    profile: Optional[str]

    def claims(self) -> Dict[str, object]:
        """The token's JWT payload (not verified: for showing ``tid``, ``aud``, ``exp``)."""
        parts = self.access_token.split(".")
        if len(parts) != 3:
            raise AzbrokerError("the token is not a JWT")
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        if not isinstance(claims, dict):
            raise AzbrokerError("the token's payload is not a JSON object")
        return claims


def binary() -> Path:
    """The ``azbroker`` binary of this installation: the scripts directory of this environment
    (or of the user scheme, for ``pip install --user``). Never a lookup on ``PATH``."""
    name = "azbroker.exe" if os.name == "nt" else "azbroker"
    schemes: List[Optional[str]] = [None]
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        schemes.append(user_scheme)
    tried = []
    for scheme in schemes:
        scripts = sysconfig.get_path("scripts") if scheme is None else sysconfig.get_path("scripts", scheme)
        candidate = Path(scripts) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
        tried.append(str(candidate))
    raise AzbrokerError(
        "the azbroker binary of this package is not installed (looked at "
        + ", ".join(tried)
        + f"); reinstall it into this environment: {sys.executable} -m pip install azbroker"
    )


def _run(args: Sequence[str]) -> str:
    try:
        done = subprocess.run(
            [str(binary()), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise AzbrokerError(f"azbroker {args[0]} did not finish within {TIMEOUT_SECONDS:.0f} s") from e
    if done.returncode != 0:
        message = done.stderr.strip() or f"azbroker {args[0]} exited with status {done.returncode}"
        raise AzbrokerError(message.removeprefix("azbroker: "))
    return done.stdout


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; one of: {', '.join(DIALECTS)}")


def variables(profile: Optional[str] = None, dialect: str = "app-service") -> Dict[str, str]:
    """The variables a client needs for ``profile`` (the daemon's default profile when None) in
    ``dialect``, as ``azbroker env --format json`` prints them. Starts the daemon if needed.
    The values include the daemon's secrets: do not print or log them."""
    _check_dialect(dialect)
    args = ["env", "--format", "json", "--dialect", dialect]
    if profile is not None:
        args += ["--profile", profile]
    parsed = json.loads(_run(args))
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise AzbrokerError("azbroker env printed something other than a JSON object of strings")
    return parsed


def use(profile: Optional[str] = None, dialect: str = "app-service") -> List[str]:
    """Points this process at ``profile`` (the daemon's default profile when None): sets the
    variables of ``dialect`` in ``os.environ`` and removes the other dialects' ones, so the next
    ``ManagedIdentityCredential()``, ``DefaultAzureCredential()`` or ``MsiAuthentication()`` gets
    that profile's tenant, without restarting the kernel. Credentials created before keep
    their old endpoint: create new ones.

    Returns the names of the variables set (never their values, which hold secrets)."""
    values = variables(profile, dialect)
    for name in MANAGED_VARIABLES:
        if name not in values:
            os.environ.pop(name, None)
    os.environ.update(values)
    return sorted(values)


def token(resource: str, profile: Optional[str] = None) -> Token:
    """A bearer token for ``resource`` (an App ID URI such as ``https://management.azure.com/``)
    from ``profile`` (the daemon's default profile when None). Starts the daemon if needed."""
    args = ["token", "--resource", resource]
    if profile is not None:
        args += ["--profile", profile]
    answer = json.loads(_run(args))
    try:
        return Token(
            access_token=str(answer["accessToken"]),
            expires_on=int(answer["expires_on"]),
            resource=str(answer["resource"]),
            token_type=str(answer["tokenType"]),
            profile=answer.get("profile"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise AzbrokerError(f"azbroker token printed an unexpected answer (missing {e})") from e
