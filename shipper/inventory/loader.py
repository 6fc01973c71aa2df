"""Load an inventory: read its sources, apply Ansible's rules, resolve each host.

``load_inventory`` takes what ``ansible -i`` takes: a YAML or INI file, an
inventory script or ``ansible-inventory --list`` JSON, a directory of such
sources, or a host list (``'a,b,'``). Groups, hosts and every effective
variable come out as ``ansible-inventory --list`` shows them (the corpus in
tests/inventories proves it against ansible-core); each host's SSH settings
and engine are then resolved from those variables.

shipper's own section in a YAML inventory names registries::

    registries:
      main: {address: registry.example:5000, ca: certs/ca.crt, username: deploy, password_file: secrets/main}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Mapping

from shipper.errors import InventoryError, Origin
from shipper.inventory.graph import Graph, Var
from shipper.inventory.hostvars import settings
from shipper.inventory.model import Group, Host, Inventory, RegistrySpec
from shipper.inventory.precedence import VarsFiles, effective_vars, ordered_groups
from shipper.inventory.resolve import resolve_engine, resolve_ssh, ssh_overrides_from_url
from shipper.inventory.sources import Sources, read_source
from shipper.yamlfile import LineDict

REGISTRY_KEYS = ("address", "ca", "username", "password_file", "insecure")


def load_inventory(path: str | Path, explicit_ssh: Mapping[str, Any] | None = None, resolve_hosts: bool = True) -> Inventory:
    """Load the inventory ``path`` (see the module's doc); ``explicit_ssh`` overrides SSH settings for every host.

    ``resolve_hosts=False``: the sources are read and checked, but no host's SSH settings or engine are
    worked out (a command that only needs the inventory's registries must not fail on a host's ssh_config)."""
    spec = str(path)
    graph = Graph()
    sources = Sources()
    read_source(spec, graph, sources)
    graph.reconcile()
    files = VarsFiles(sources.bases)
    hosts: dict[str, Host] = {}
    for name, node in graph.hosts.items() if resolve_hosts else ():
        variables = effective_vars(graph, name, files)
        hosts[name] = _build_host(name, node.origin, tuple(ordered_groups(graph, name)), variables, explicit_ssh or {})
    groups_out = {
        name: Group(name, tuple(g.hosts), tuple(g.children), g.origin, tuple(graph.group_hosts(name)))
        for name, g in graph.groups.items()
    }
    registries: dict[str, RegistrySpec] = {}
    for document in sources.yaml_documents:
        registries.update(_registries(document, Path(document.path).parent))
    return Inventory(spec, hosts, groups_out, registries, tuple(sources.files))


def _values(variables: Mapping[str, Var]) -> dict[str, Any]:
    return {key: var.value for key, var in variables.items()}


def _sources(variables: Mapping[str, Var]) -> dict[str, str]:
    return {key: var.describe() for key, var in variables.items()}


def _build_host(name: str, origin: Origin, groups: tuple[str, ...], variables: Mapping[str, Var], explicit: Mapping[str, Any]) -> Host:
    chosen = settings(variables, f"host {name}")
    engine_url = chosen.get("docker_host", "")
    overrides = dict(explicit)
    if isinstance(engine_url, str) and engine_url.startswith("ssh://"):
        overrides = {**ssh_overrides_from_url(engine_url, origin), **overrides}
    ssh = resolve_ssh(name, chosen, overrides, origin)
    engine = resolve_engine(chosen, ssh, origin)
    return Host(name, tuple(g for g in groups if g != "all"), _values(variables), ssh, engine, origin, _sources(variables))


def _registries(document: LineDict, base: Path) -> dict[str, RegistrySpec]:
    body = document.get("registries")
    if body is None:
        return {}
    origin = document.origin("registries")
    if not isinstance(body, LineDict):
        raise InventoryError("registries: must be a mapping of names to registries", origin=origin)
    found = {}
    for name, spec in body.items():
        where = body.origin(name)
        if not isinstance(spec, LineDict) or not isinstance(spec.get("address"), str):
            raise InventoryError(f"registry {name!r} needs at least 'address: host:port'", origin=where)
        for key in spec:
            if key not in REGISTRY_KEYS:
                raise InventoryError(f"unknown key {key!r} in registry {name!r}", hint=f"a registry takes {', '.join(REGISTRY_KEYS)}", origin=spec.origin(key))
        found[str(name)] = _registry(str(name), spec, where, base)
    return found


def _registry(name: str, spec: LineDict, origin: Origin, base: Path) -> RegistrySpec:
    def file(key: str) -> str | None:
        value = spec.get(key)
        return None if value is None else str(base / str(value))

    return RegistrySpec(
        name, str(spec["address"]), file("ca"), None if spec.get("username") is None else str(spec["username"]),
        file("password_file"), bool(spec.get("insecure", False)), origin,
    )  # fmt: skip
