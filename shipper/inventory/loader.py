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
from shipper.inventory.resolve import check_hostname, resolve_engine, resolve_ssh, ssh_overrides_from_url
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
    names = list(graph.hosts) if resolve_hosts else []
    merged = {name: effective_vars(graph, name, files) for name in names}
    chosen = {name: settings(variables, f"host {name}") for name, variables in merged.items()}
    for name, node in ((n, graph.hosts[n]) for n in names):
        # Every address is checked before any ssh_config lookup, whose Match exec runs commands.
        check_hostname(str(chosen[name].get("ssh_host") or name), "host" if "ssh_host" not in chosen[name] else f"the SSH address of host {name[:100]}", node.origin)
    for name, node in ((n, graph.hosts[n]) for n in names):
        hosts[name] = _build_host(name, node.origin, tuple(ordered_groups(graph, name)), merged[name], chosen[name], explicit_ssh or {})
    groups_out = {
        name: Group(name, tuple(g.hosts), tuple(g.children), g.origin, tuple(graph.group_hosts(name)))
        for name, g in graph.groups.items()
    }
    registries: dict[str, RegistrySpec] = {}
    for document in sources.yaml_documents:
        registries.update(_registries(document, Path(document.path).parent))
    return Inventory(spec, hosts, groups_out, registries, tuple(sources.files))


def adhoc_host(url: str) -> Host:
    """A host outside any inventory, from ``ssh://[user@]host[:port]`` (``--to ssh://ops@10.0.0.9:2222``).

    Its SSH settings come from the URL, then ``~/.ssh/config`` and the defaults, as ``ssh`` would take them."""
    origin = Origin(url[:200], None)
    overrides = ssh_overrides_from_url(url, origin)
    ssh = resolve_ssh(str(overrides["ssh_host"]), {}, overrides, origin)
    return Host(ssh.hostname, (), {}, ssh, resolve_engine({}, ssh, origin), origin)


def _values(variables: Mapping[str, Var]) -> dict[str, Any]:
    return {key: var.value for key, var in variables.items()}


def _sources(variables: Mapping[str, Var]) -> dict[str, str]:
    return {key: var.describe() for key, var in variables.items()}


def _build_host(name: str, origin: Origin, groups: tuple[str, ...], variables: Mapping[str, Var], chosen: Mapping[str, Any], explicit: Mapping[str, Any]) -> Host:
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
