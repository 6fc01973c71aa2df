"""Where a registry of shipper's lives on its host, and what is asked of it.

Its files are kept under ``/var/lib/shipper/registry-PORT`` (0600, written over SSH):

    auth/htpasswd            bcrypt entries only
    proxy/config.yml         a site cache's config (--mirror-of): its upstream and that upstream's login
    certs/ca.crt, ca.key     the CA shipper made (self-signed mode)
    certs/server.crt, .key   the server certificate (SANs: every name of the host)
    http-secret              stable, so uploads survive a restart
    data/                    the registry's storage (or --data PATH): outlives the container
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from shipper.errors import UsageError
from shipper.inventory.model import Host
from shipper.transport.ssh import SSHSession

STATE_ROOT = "/var/lib/shipper"
LABEL = "io.shipper.registry"
CERTS_D = "/etc/docker/certs.d"
READY_TIMEOUT = 30.0
RENEW_BEFORE_DAYS = 30


def state_dir(port: int) -> str:
    return f"{STATE_ROOT}/registry-{port}"


def container_name(port: int) -> str:
    return f"shipper-registry-{port}"


@dataclass(frozen=True)
class Mirror:
    """A site cache's upstream (distribution's proxy mode): pulls it lacks are fetched there and kept."""

    url: str  # https://host:port of the upstream registry
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # from a file, never argv; only ever in a 0600 file on the host
    ca: bytes | None = None  # the upstream's CA, when its certificate is not signed by a public one


@dataclass(frozen=True)
class UpRequest:
    host: Host
    users: dict[str, str] = field(repr=False)  # name -> password (from files or a prompt, never argv; never printed)
    port: int = 5000
    address: str | None = None  # where engines reach it (default: the host's SSH address)
    image: str = "registry:2"
    data: str | None = None  # host path for the storage (default: STATE/data)
    cert: tuple[str, str] | None = None  # (cert file, key file) here; None: self-signed
    ca: str | None = None  # CA of a given cert (default: the cert itself)
    trust: tuple[Host, ...] = ()
    login: bool = False  # also log the trusting engines' docker CLIs in (docker login, password on stdin)
    mirror_of: Mirror | None = None  # a pull-through cache of that registry (no pushes: it fills itself)

    @property
    def registry_address(self) -> str:
        return f"{self.address or self.host.ssh.hostname}:{self.port}"

    def names(self) -> list[str]:
        """Every name and address the certificate must cover."""
        return list(dict.fromkeys(n for n in (self.address, self.host.ssh.hostname, self.host.name, "localhost") if n))

    def addresses_from_here(self) -> list[str]:
        """The certificate's names, with the port, as this machine may name the registry ("localhost" is
        another machine from here)."""
        return [f"{name}:{self.port}" for name in self.names() if name != "localhost"]


def config_path(command: Sequence[str]) -> str:
    """Where the image keeps its config: the .yml argument of its command (registry:2 and :3 differ)."""
    for argument in command:
        if argument.endswith((".yml", ".yaml")):
            return argument
    raise UsageError(
        f"cannot tell where the registry image keeps its config (its command is {' '.join(command) or 'empty'})",
        hint="use a registry:2 or registry:3 image (or one built like them)",
    )


class HostFiles:
    """The registry's files on its host: read, compared, written only when they change."""

    def __init__(self, session: SSHSession, root: str, check: bool = False) -> None:
        self.session, self.root, self.check = session, root, check
        self.changes: list[str] = []

    def read(self, name: str) -> bytes | None:
        return self.session.read_file(f"{self.root}/{name}")

    def put(self, name: str, data: bytes, why: str, mode: int = 0o600) -> None:
        if self.read(name) != data:
            if not self.check:
                self.session.write_file(f"{self.root}/{name}", data, mode)
            self.changes.append(why)
