"""Fixtures for the Python package's tests: the installed azbroker binary (never one on PATH),
an authority (a daemon run with ``--local-authority``, whose embedded fake Entra ID signs tokens
for any tenant), and a user config of the test's own that points at it. Every daemon a test
starts is stopped at the end. Traffic stays on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, List

import pytest

import azbroker

#: The two tenants of the user config (GUIDs: the fake's ``tid`` is the GUID itself).
CONTOSO = "11111111-2222-4333-8444-555555555555"
FABRIKAM = "99999999-8888-4777-8666-555555555555"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {seconds} s")
        time.sleep(0.05)


def serve_pids(config: Path) -> List[int]:
    """The live ``azbroker ... serve`` processes for ``config`` (a zombie has no command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(config).encode() in args and b"serve" in args:
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="session")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The authority host of a ``--local-authority`` daemon started by hand for this session."""
    home = tmp_path_factory.mktemp("authority")
    config = home / "config.toml"
    config.write_text(
        f'[server]\nlisten = ["127.0.0.1:0"]\ntls_listen = []\n'
        f'state_dir = "{home}/state"\nruntime_dir = "{home}/run"\n'
    )
    log = (home / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [str(azbroker.binary()), "--config", str(config), "--no-autostart", "serve", "--local-authority"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        wait_for(home / "run" / "listeners.json", 20)
        status = subprocess.run(
            [str(azbroker.binary()), "--config", str(config), "--no-autostart", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        yield str(json.loads(status.stdout)["authority_host"]).rstrip("/")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()


@pytest.fixture()
def user_config(authority: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A config of this user's own with profiles ``contoso`` (default) and ``fabrikam`` in two
    tenants, chosen through ``AZBROKER_CONFIG``; no daemon runs for it yet."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[server]\nlisten = ["127.0.0.1:{free_port()}"]\ntls_listen = []\n'
        f'state_dir = "{tmp_path}/state"\nruntime_dir = "{tmp_path}/run"\ndefault_profile = "contoso"\n\n'
        f'[cloud]\nauthority_host = "{authority}"\n\n'
        '[logins.app]\nkind = "service-principal"\n'
        f'tenant = "{CONTOSO}"\nclient_id = "5a8c1b7e-0000-4000-8000-000000000001"\n'
        'client_secret = "python-tests-secret"\n\n'
        '[profiles.contoso]\nlogin = "app"\n\n'
        f'[profiles.fabrikam]\nlogin = "app"\ntenant = "{FABRIKAM}"\n'
    )
    monkeypatch.setenv("AZBROKER_CONFIG", str(config))
    monkeypatch.delenv("AZBROKER_NO_AUTOSTART", raising=False)
    for name in azbroker.MANAGED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert serve_pids(config) == []
    yield config
    subprocess.run([str(azbroker.binary()), "--config", str(config), "stop"], capture_output=True, timeout=60)
    for pid in serve_pids(config):
        os.kill(pid, 9)
