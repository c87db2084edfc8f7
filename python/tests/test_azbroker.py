"""The package against the real installed binary and a real (autostarted) daemon: ``token()``
and ``use()`` start the daemon, ``use()`` switches a running interpreter to another profile's
tenant for azure-identity's ``ManagedIdentityCredential``, concurrent first commands start one
daemon, ``azbroker stop`` ends it, and with autostart off the error names ``azbroker serve``."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import azbroker
from conftest import CONTOSO, FABRIKAM, serve_pids

VAULT = "https://vault.azure.net"


def test_the_binary_is_this_environments_own() -> None:
    path = azbroker.binary()
    assert path.parent == Path(sysconfig.get_path("scripts"))
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("azbroker ")


def test_token_starts_the_daemon_and_names_the_tenant(user_config: Path) -> None:
    tok = azbroker.token(VAULT)
    assert tok.profile == "contoso"
    assert tok.claims()["tid"] == CONTOSO
    assert tok.access_token not in repr(tok), "the token never shows in repr"
    assert len(serve_pids(user_config)) == 1
    other = azbroker.token(VAULT, profile="fabrikam")
    assert other.claims()["tid"] == FABRIKAM
    assert len(serve_pids(user_config)) == 1, "the running daemon is reused"


def test_use_switches_a_running_interpreter_without_path(user_config: Path) -> None:
    # A fresh interpreter, as a notebook kernel is, with no PATH at all: the binary is found in
    # the environment's scripts directory. Credentials made after use() get the new tenant.
    program = f"""
import base64, json, os
import azbroker
from azure.identity import ManagedIdentityCredential

def tid(cred):
    jwt = cred.get_token("{VAULT}/.default").token
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["tid"]

names = azbroker.use("fabrikam")
assert names == ["IDENTITY_ENDPOINT", "IDENTITY_HEADER"], names
print("fabrikam", tid(ManagedIdentityCredential()))
azbroker.use()
print("default", tid(ManagedIdentityCredential()))
azbroker.use("fabrikam", dialect="azure-ml")
assert "IDENTITY_ENDPOINT" not in os.environ, "the other dialect's variables are gone"
print("azure-ml", tid(ManagedIdentityCredential()))
"""
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines == ["fabrikam", FABRIKAM, "default", CONTOSO, "azure-ml", FABRIKAM], done.stdout
    assert len(serve_pids(user_config)) == 1


def test_concurrent_first_commands_start_one_daemon_and_stop_ends_it(user_config: Path) -> None:
    binary = str(azbroker.binary())
    runs = [
        subprocess.Popen([binary, "token", "--resource", VAULT], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for run in runs:
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        assert b"accessToken" in out
    assert len(serve_pids(user_config)) == 1
    stop = subprocess.run([binary, "stop"], capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert "stopped the daemon" in stop.stdout
    assert serve_pids(user_config) == []


def test_with_autostart_off_the_error_names_azbroker_serve(
    user_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZBROKER_NO_AUTOSTART", "1")
    with pytest.raises(azbroker.AzbrokerError, match="azbroker serve"):
        azbroker.token(VAULT)
    assert serve_pids(user_config) == []


def test_a_wrong_profile_or_dialect_is_refused(user_config: Path) -> None:
    with pytest.raises(ValueError, match="unknown dialect"):
        azbroker.use(dialect="nope")
    with pytest.raises(azbroker.AzbrokerError, match="not configured"):
        azbroker.use("nobody")
    assert "IDENTITY_ENDPOINT" not in os.environ, "a failed use() changes nothing"
