"""Engines that trust the registry's CA (``/etc/docker/certs.d/ADDR:PORT/ca.crt``), and their docker CLIs logged in."""

from __future__ import annotations

import shlex
from typing import Sequence

from shipper.errors import RegistryAuthFailed
from shipper.hostpool import for_each_host
from shipper.inventory.model import Host
from shipper.provision.layout import CERTS_D
from shipper.transport.ssh import SSHSession


def trust(hosts: Sequence[Host], address: str, ca: bytes, check: bool = False) -> list[str]:
    """Make sure every engine host has the CA (over SSH); the hosts where it had to be (``check``: would be) installed."""

    def install(host: Host) -> bool:
        with SSHSession(host.ssh, host.name) as session:
            path = f"{CERTS_D}/{address}/ca.crt"
            if session.read_file(path) == ca:
                return False
            if not check:
                session.write_file(path, ca, 0o644)
            return True

    outcomes = for_each_host(list(hosts), install)
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    return [o.host.name for o in outcomes if o.value]


def logged_in(session: SSHSession, address: str) -> bool:
    """Whether the host's docker CLI config already holds credentials for ``address``."""
    config = session.run('cat "${DOCKER_CONFIG:-$HOME/.docker}/config.json" 2>/dev/null').stdout
    return f'"{address}"' in config.decode(errors="replace")


def docker_login(session: SSHSession, host: Host, address: str, user: str, password: str) -> None:
    """``docker login`` on the host, the password on stdin (never in argv)."""
    result = session.run(f"docker login --username {shlex.quote(user)} --password-stdin {shlex.quote(address)}", stdin=password.encode())
    if not result.ok:
        raise RegistryAuthFailed(f"docker login to {address} on {host.name} failed: {result.first_error_line()}")


def login_everywhere(hosts: Sequence[Host], address: str, user: str, password: str) -> None:
    def login(host: Host) -> None:
        with SSHSession(host.ssh, host.name) as session:
            docker_login(session, host, address, user, password)

    for outcome in for_each_host(list(hosts), login):
        if outcome.error is not None:
            raise outcome.error
