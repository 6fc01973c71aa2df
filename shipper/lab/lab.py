"""The local lab: several real Docker engines on this machine, each behind its own sshd.

``Lab(root).up()`` gives, for hosts a, b, c, …:

- a ``dockerd`` per host (own socket, data root, exec root, pidfile; TLS on
  ``<address>:2376``), an ``sshd`` per host on its own loopback address
  (``<net>.2``, ``<net>.3``, …, port 2222) whose sessions reach that engine;
- a client key, an ssh_config and a known_hosts holding the hosts' keys (so
  host keys are checked strictly, as in a real fleet);
- ``inventory.yml`` (engines over SSH, like a fleet) and ``inventory-local.yml``
  (the same hosts through their unix sockets);
- the real registry (Debian's ``docker-registry``) with bcrypt htpasswd and TLS
  from the lab's CA.

With ``links``, every host (and each of the lab's registries) runs instead in
a network namespace of its own on a link of its own, shaped and counted
(netns.py): ``Lab(root, "198.18.3", hosts, links="100mbit")``; ``lab.network``
reads each link's counters, cuts and restores links.

The same code serves the README's demo and the test fixtures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import yaml

from shipper import pki
from shipper.engine import connect
from shipper.inventory import load_inventory
from shipper.lab.daemons import DOCKER_TLS_PORT, REGISTRY_USER, SSH_PORT, EngineDaemon, RegistryDaemon, SSHDaemon
from shipper.lab.images import SyntheticImage, save_stream
from shipper.lab.netns import Network, in_namespace_range
from shipper.lab.procs import LabError

DEFAULT_ROOT = Path(os.environ.get("SHIPPER_LAB_DIR", "/tmp/shipper-lab"))
DEFAULT_NET = "127.0.0"
DEFAULT_HOSTS = ("a", "b", "c")
# A namespaced lab's registries are hosts of its network too, above the hosts' addresses (loopback: .10, .11, .12).
REGISTRY_SLOTS = {"registry": 250, "registry-plain": 251, "registry-token": 252}
MAX_NAMESPACED_HOSTS = 240


def _parallel(actions: Sequence[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=max(1, len(actions))) as pool:
        return [f.result() for f in [pool.submit(a) for a in actions]]


class Lab:
    """A lab rooted at ``root``, its hosts on addresses ``<net>.2`` and up."""

    def __init__(
        self, root: Path = DEFAULT_ROOT, net: str = DEFAULT_NET, hosts: Sequence[str] = DEFAULT_HOSTS, disk_mb: dict[str, int] | None = None,
        kinds: dict[str, str] | None = None, links: str | Mapping[str, str | None] | None = None,
    ) -> None:
        """``disk_mb``: hosts whose engine gets a data root of that many MB (a tmpfs): a disk that fills up.
        ``kinds``: hosts whose engine is not the system's 20.10 (engines.py: "26", "28-containerd", …).
        ``links``: each host in a network namespace of its own, its link held to this rate (tc's syntax, both ways),
        or to the rate a mapping gives it (None or missing: unshaped); the registries' links are unshaped."""
        if len(str(root)) > 60:
            raise LabError(f"lab directory {root} is too long", hint="unix socket paths are limited to 107 bytes")
        self.root = Path(root)
        self.net = net
        self.names = tuple(hosts)
        self.disk_mb = dict(disk_mb or {})
        self.kinds = dict(kinds or {})
        self.ssh_dir = self.root / "ssh"
        self.ca_dir = self.root / "ca"
        self.network: Network | None = None
        if links is not None:
            if len(self.names) > MAX_NAMESPACED_HOSTS:
                raise LabError(f"a namespaced lab has at most {MAX_NAMESPACED_HOSTS} hosts")
            rates = {n: links for n in self.names} if isinstance(links, str) else dict(links)
            self.network = Network(net, self._slots(), rates)

    # -- layout ------------------------------------------------------------

    def _slots(self) -> dict[str, int]:
        return {n: 2 + i for i, n in enumerate(self.names)} | dict(REGISTRY_SLOTS)

    def address(self, name: str) -> str:
        return f"{self.net}.{2 + self.names.index(name)}"

    def enter(self, name: str) -> tuple[str, ...]:
        """The argv prefix that runs a program in host (or registry) ``name``'s namespace; empty on loopback."""
        return tuple(self.network.enter(name)) if self.network else ()

    def engine(self, name: str) -> EngineDaemon:
        return EngineDaemon(
            name, self.address(name), self.root / name, self.disk_mb.get(name), self.kinds.get(name, "20.10"),
            insecure_registries=(self.plain_registry.host_port,), enter=self.enter(name),
        )  # fmt: skip

    def sshd(self, name: str) -> SSHDaemon:
        return SSHDaemon(
            name, self.address(name), self.root / name / "sshd", self.engine(name).socket, self.ssh_dir / "authorized_keys", self.enter(name)
        )  # fmt: skip

    def _registry(self, name: str, auth: str) -> RegistryDaemon:
        last = REGISTRY_SLOTS[name] if self.network else 10 + list(REGISTRY_SLOTS).index(name)
        return RegistryDaemon(f"{self.net}.{last}", self.root / name, auth=auth, enter=self.enter(name))

    @property
    def registry(self) -> RegistryDaemon:
        return self._registry("registry", "htpasswd")

    @property
    def plain_registry(self) -> RegistryDaemon:
        """A second registry: plain HTTP, no auth."""
        return self._registry("registry-plain", "none")

    @property
    def token_registry(self) -> RegistryDaemon:
        """A third registry: TLS, and Bearer tokens from the lab's token service (same user and password)."""
        return self._registry("registry-token", "token")

    @property
    def inventory_path(self) -> Path:
        return self.root / "inventory.yml"

    @property
    def local_inventory_path(self) -> Path:
        return self.root / "inventory-local.yml"

    @property
    def client_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.ssh_dir / "config"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    def tls_file(self, which: str) -> Path:
        """``ca.crt``, ``client.crt`` or ``client.key``: what a client needs for the engines' TLS port."""
        return self.ca_dir / which

    # -- up and down ---------------------------------------------------------

    def up(self, registry: bool = True) -> None:
        """Start everything that is not running yet; safe to call again."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.network:
            self.network.create()
        ca = self._ca()
        self._client_key()
        _parallel([partial(self.start_host, n, ca) for n in self.names])
        if registry:
            self.registry.start(ca)
            self.plain_registry.start(ca)
            self.token_registry.start(ca, password_from=self.registry.password_file)
        self._write_client_files(registry)

    def start_host(self, name: str, ca: pki.CertKey | None = None) -> None:
        """Start one host's engine and sshd (after ``stop_engine``, for instance)."""
        ca = ca or self._ca()
        engine = self.engine(name)
        engine.dir.mkdir(parents=True, exist_ok=True)
        tls = engine.dir / "tls"
        tls.mkdir(exist_ok=True)
        if not (tls / "server.key").exists():
            pki.issue(ca, f"lab engine {name}", [engine.address, name, "localhost"]).write(tls / "server.crt", tls / "server.key")
        engine.start(self.ca_dir / "ca.crt", tls / "server.crt", tls / "server.key")
        self.sshd(name).start()

    def stop_engine(self, name: str) -> None:
        """Stop one host's dockerd, leaving its sshd up (an engine down behind a live host)."""
        self.engine(name).stop()

    def down(self, purge: bool = False) -> None:
        """Stop what the lab started; with ``purge``, also remove its directory."""
        self.registry.stop()
        self.plain_registry.stop()
        self.token_registry.stop()
        _parallel([partial(self._stop_host, n) for n in self.names])
        if self.network:
            self.network.destroy()
        elif in_namespace_range(self.net):  # a namespaced lab taken down without its links given: its namespaces go too
            Network(self.net, self._slots(), {}).destroy()
        if purge and self.root.exists():
            self._unmount_leftovers()
            shutil.rmtree(self.root, ignore_errors=True)

    def _stop_host(self, name: str) -> None:
        self.sshd(name).stop()
        self.engine(name).stop()

    def _unmount_leftovers(self) -> None:
        # A dockerd killed hard can leave overlay and shm mounts under its data root.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(str(self.root) + "/")), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)

    def status(self) -> dict[str, Any]:
        """What runs, as plain data."""
        return {
            "root": str(self.root),
            "hosts": {
                n: {"address": self.address(n), "engine": self.engine(n).running(), "sshd": self.sshd(n).running()}
                for n in self.names
            },
            "registry": {"url": self.registry.url, "running": self.registry.running()},
            "inventory": str(self.inventory_path),
        }

    # -- files for clients ---------------------------------------------------

    def _ca(self) -> pki.CertKey:
        self.ca_dir.mkdir(parents=True, exist_ok=True)
        cert, key = self.ca_dir / "ca.crt", self.ca_dir / "ca.key"
        if cert.exists() and key.exists():
            return pki.CertKey(cert.read_bytes(), key.read_bytes())
        ca = pki.new_ca("shipper lab CA")
        ca.write(cert, key)
        pki.issue(ca, "shipper lab client", usage="client").write(self.ca_dir / "client.crt", self.ca_dir / "client.key")
        return ca

    def _client_key(self) -> None:
        self.ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.client_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "shipper-lab", "-f", str(self.client_key)], check=True)
        (self.ssh_dir / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())

    def _write_client_files(self, registry: bool) -> None:
        self.known_hosts.write_text("".join(self.sshd(n).known_hosts_line() for n in self.names))
        blocks = []
        for n in self.names:
            blocks.append(
                f"Host {n}\n  HostName {self.address(n)}\n  Port {SSH_PORT}\n  User root\n"
                f"  IdentityFile {self.client_key}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n  BatchMode yes\n"
            )
        self.ssh_config.write_text("# Generated by shipper's lab.\n" + "\n".join(blocks))
        self.inventory_path.write_text(self._inventory(local=False, registry=registry))
        self.local_inventory_path.write_text(self._inventory(local=True, registry=registry))

    def _inventory(self, local: bool, registry: bool) -> str:
        hosts = {n: ({"docker_host": f"unix://{self.engine(n).socket}"} if local else None) for n in self.names}
        data: dict[str, Any] = {
            "all": {
                "vars": {"ssh_config_file": str(self.ssh_config)},
                "hosts": hosts,
                "children": {"web": {"hosts": {n: None for n in self.names[1:]}}},
            }
        }
        how = "through their unix sockets" if local else "over SSH, as in a real fleet"
        body = yaml.safe_dump(data, default_flow_style=False, sort_keys=False).replace(": null\n", ":\n")
        return f"# Generated by shipper's lab: the lab's engines, {how}.\n" + body

    # -- images ----------------------------------------------------------------

    def load_images(self, name: str, images: Sequence[SyntheticImage]) -> list[str]:
        """Build ``images`` straight into host ``name``'s engine (through its unix socket)."""
        host = load_inventory(self.local_inventory_path).host(name)
        with connect(host, timeout=None) as engine:
            return engine.load(save_stream(images))

    def docker(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against host ``name``'s engine (for tests and the demo)."""
        return subprocess.run(
            ["docker", "-H", f"unix://{self.engine(name).socket}", *args], capture_output=True, text=True, check=check
        )

    def registry_credentials(self) -> tuple[str, str]:
        return REGISTRY_USER, self.registry.password_file.read_text()

    def engine_tls_url(self, name: str) -> str:
        return f"tcp://{self.address(name)}:{DOCKER_TLS_PORT}"
