"""What an inventory holds once it is loaded: hosts, groups, and how to reach them.

These are plain immutable values. Everything that needs a file, a network or
a library lives elsewhere; these can be built by hand in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from collections.abc import Mapping

from shipper.errors import Origin

EngineScheme = Literal["unix", "tcp", "ssh"]
HostKeyPolicy = Literal["yes", "accept-new", "no"]


@dataclass(frozen=True)
class SSHSettings:
    """How to open an SSH connection to a host, fully resolved.

    ``sources`` says, per setting, where its value came from (``explicit``,
    ``inventory``, ``ssh_config`` or ``default``), so ``shipper hosts`` can
    show why a host is reached the way it is.
    """

    alias: str  # the name the user gave; the ssh_config lookup key
    hostname: str  # the address actually dialled
    port: int = 22
    user: str = "root"
    identity_files: tuple[str, ...] = ()
    known_hosts_files: tuple[str, ...] = ()
    strict_host_key_checking: HostKeyPolicy = "yes"
    proxy_command: str | None = None
    proxy_jump: str | None = None
    connect_timeout: float = 10.0
    # ssh_config's ServerAliveInterval/ServerAliveCountMax: a peer silent for interval x count seconds is gone
    # (a dropped link), for OpenSSH and paramiko sessions alike; interval 0: never given up on
    alive_interval: int = 15
    alive_count: int = 4
    config_file: str | None = None  # the ssh_config these settings were read from, for the OpenSSH client
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def dead_after(self) -> int:
        """Seconds of silence after which the peer counts as gone (0: never)."""
        return self.alive_interval * self.alive_count

    @property
    def destination(self) -> str:
        """``user@host:port`` as a person would write it."""
        return f"{self.user}@{self.hostname}:{self.port}"


@dataclass(frozen=True)
class TLSFiles:
    """Client TLS material for a ``tcp://`` engine."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class EngineEndpoint:
    """How to reach a host's Docker engine."""

    url: str  # unix:///run/docker.sock, tcp://h:2376, ssh://user@h:22
    scheme: EngineScheme
    tls: TLSFiles | None = None
    derived: bool = False  # True when built from the SSH settings, not written in the inventory


@dataclass(frozen=True)
class Host:
    """One host of the inventory with everything resolved."""

    name: str
    groups: tuple[str, ...]
    vars: Mapping[str, Any]  # effective variables under the names written (what ansible-inventory --host shows)
    ssh: SSHSettings
    engine: EngineEndpoint
    origin: Origin
    var_sources: Mapping[str, str] = field(default_factory=dict, compare=False)  # variable -> where its value was written

    def describe(self) -> str:
        """``name (engine url)``, used in messages."""
        return f"{self.name} ({self.engine.url})"


@dataclass(frozen=True)
class Group:
    """A named set of hosts; ``children`` are group names."""

    name: str
    hosts: tuple[str, ...]  # listed in the group itself
    children: tuple[str, ...]
    origin: Origin
    members: tuple[str, ...] = ()  # its hosts and its descendants', in Ansible's order


@dataclass(frozen=True)
class RegistrySpec:
    """A registry named in the inventory's ``registries:`` section."""

    name: str
    address: str  # host:port, or http://host:port
    ca: str | None = None  # CA file, resolved against the inventory's directory
    username: str | None = None
    password_file: str | None = None  # resolved against the inventory's directory
    insecure: bool = False
    origin: Origin | None = None


@dataclass(frozen=True)
class Inventory:
    """Hosts and groups, in the order the inventory gives them (``all`` and ``ungrouped`` included); and named registries."""

    path: str
    hosts: Mapping[str, Host]
    groups: Mapping[str, Group]
    registries: Mapping[str, RegistrySpec] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # every inventory file read

    def host(self, name: str) -> Host:
        """The host called ``name``; see ``targets.select`` for expressions."""
        return self.hosts[name]
