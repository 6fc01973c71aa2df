"""Read an Ansible-shaped YAML inventory into an ``Inventory``.

The shape::

    all:
      vars: {...}
      hosts: {a: {...}, b: }
      children:
        web: {hosts: {...}, vars: {...}, children: {...}}

Top-level keys other than ``all`` are groups under ``all``, as in Ansible,
except ``registries:``, shipper's own (Ansible warns and skips it)::

    registries:
      main: {address: registry.example:5000, ca: certs/ca.crt, username: deploy, password_file: secrets/main}
``group_vars/`` and ``host_vars/`` beside the file add variables. Precedence,
lowest first: all < parent group < child group < host (within a level the
inventory file first, then the ``*_vars`` file); groups of the same depth
apply in name order, as Ansible does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping

from shipper.errors import InventoryError, Origin
from shipper.inventory.hostvars import normalize
from shipper.inventory.model import Group, Host, Inventory, RegistrySpec
from shipper.inventory.resolve import resolve_engine, resolve_ssh, ssh_overrides_from_url
from shipper.yamlfile import LineDict, YAMLFileError, load_file

GROUP_KEYS = ("hosts", "children", "vars")
REGISTRY_KEYS = ("address", "ca", "username", "password_file", "insecure")
_GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", re.ASCII)  # matched whole: "$" would let a trailing newline in
_HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*", re.ASCII)
_RANGE = re.compile(r"\[([0-9a-z]+):([0-9a-z]+)(?::([0-9]+))?\]")


@dataclass
class _GroupDef:
    name: str
    origin: Origin
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: list[tuple[Mapping[str, Any], Origin]] = field(default_factory=list)


@dataclass
class _HostDef:
    name: str
    origin: Origin
    vars: list[tuple[Mapping[str, Any], Origin]] = field(default_factory=list)


class _Reader:
    """Walks the YAML tree once, collecting group and host definitions."""

    def __init__(self) -> None:
        self.groups: dict[str, _GroupDef] = {}
        self.hosts: dict[str, _HostDef] = {}
        self.registries: dict[str, tuple[LineDict, Origin]] = {}

    def read_top(self, data: Any, path: str) -> None:
        if data is None:
            raise InventoryError(f"{path}: the inventory is empty", hint="start it with 'all:' and list hosts under 'hosts:'")
        if not isinstance(data, LineDict):
            raise InventoryError(f"{path}: an inventory must be a mapping of groups, starting with 'all:'")
        self._group("all", LineDict(), data.origin())
        for name, body in data.items():
            if name == "registries":
                self._registries(body, data.origin(name))
                continue
            self._group(str(name), body, data.origin(name))
            if name != "all":
                self.groups["all"].children.append(str(name))

    def _group(self, name: str, body: Any, origin: Origin) -> None:
        if not _GROUP_NAME.fullmatch(name):
            raise InventoryError(f"{name!r} is not a valid group name", hint="use letters, digits, '_', '-' and '.'", origin=origin)
        group = self.groups.setdefault(name, _GroupDef(name, origin))
        if body is None:
            return
        if not isinstance(body, LineDict):
            raise InventoryError(
                f"group {name!r} must be a mapping with hosts:, children: or vars:, not {_kind(body)}", origin=origin
            )
        for key in body:
            if key not in GROUP_KEYS:
                hint = "a group holds only hosts:, children: and vars:"
                if isinstance(key, str) and key.rstrip("s") + "s" in GROUP_KEYS:
                    hint = f"did you mean '{key.rstrip('s')}s:'? " + hint
                raise InventoryError(f"unknown key {key!r} in group {name!r}", hint=hint, origin=body.origin(key))
        for host_name, host_body, host_origin in _entries(body, "hosts", name):
            for expanded in _expand_range(host_name, host_origin):
                self._host(expanded, host_body, host_origin)
                group.hosts.append(expanded)
        for child, child_body, child_origin in _entries(body, "children", name):
            self._group(child, child_body, child_origin)
            group.children.append(child)
        variables = body.get("vars")
        if variables is not None:
            if not isinstance(variables, LineDict):
                raise InventoryError(f"vars of group {name!r} must be a mapping", origin=body.origin("vars"))
            group.vars.append((variables, body.origin("vars")))

    def _registries(self, body: Any, origin: Origin) -> None:
        if not isinstance(body, LineDict):
            raise InventoryError("registries: must be a mapping of names to registries", origin=origin)
        for name, spec in body.items():
            where = body.origin(name)
            if not isinstance(spec, LineDict) or not isinstance(spec.get("address"), str):
                raise InventoryError(f"registry {name!r} needs at least 'address: host:port'", origin=where)
            for key in spec:
                if key not in REGISTRY_KEYS:
                    raise InventoryError(f"unknown key {key!r} in registry {name!r}", hint=f"a registry takes {', '.join(REGISTRY_KEYS)}", origin=spec.origin(key))
            self.registries[str(name)] = (spec, where)

    def _host(self, name: str, body: Any, origin: Origin) -> None:
        if not _HOST_NAME.fullmatch(name):
            raise InventoryError(f"{name!r} is not a valid host name", origin=origin)
        host = self.hosts.setdefault(name, _HostDef(name, origin))
        if body is None:
            return
        if not isinstance(body, LineDict):
            raise InventoryError(
                f"host {name!r} must be followed by a mapping of variables (or nothing), not {_kind(body)}",
                hint=f"write '{name}:' and put its address under it as 'ssh_host: {body}'" if isinstance(body, str) else None,
                origin=origin,
            )
        host.vars.append((body, origin))


def _kind(value: Any) -> str:
    return {str: "a string", list: "a list", int: "a number", bool: "true/false"}.get(type(value), type(value).__name__)


def _entries(body: LineDict, key: str, group: str) -> Iterator[tuple[str, Any, Origin]]:
    section = body.get(key)
    if section is None:
        return
    if not isinstance(section, LineDict):
        raise InventoryError(
            f"{key} of group {group!r} must be a mapping of names, not {_kind(section)}",
            hint=f"write each name on its own line followed by ':' under '{key}:'",
            origin=body.origin(key),
        )
    for name, value in section.items():
        yield str(name), value, section.origin(name)


def _expand_range(name: str, origin: Origin) -> list[str]:
    """Ansible host ranges: ``web[01:03]`` -> web01, web02, web03; ``db-[a:c]``."""
    match = _RANGE.search(name)
    if not match:
        return [name]
    start, end, step = match.group(1), match.group(2), int(match.group(3) or 1)
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    elif len(start) == len(end) == 1 and start.isalpha() and end.isalpha():
        values = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        raise InventoryError(f"host range in {name!r} must be [N:M] or [a:z]", origin=origin)
    if not values:
        raise InventoryError(f"host range in {name!r} is empty", origin=origin)
    head, tail = name[: match.start()], name[match.end() :]
    return [expanded for v in values for expanded in _expand_range(head + v + tail, origin)]


def _check_cycles(groups: Mapping[str, _GroupDef]) -> None:
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            cycle = trail[trail.index(name) :] + [name]
            raise InventoryError(
                f"groups form a cycle: {' -> '.join(cycle)}",
                hint=f"a group cannot contain itself; remove {name!r} from the children of {cycle[-2]!r}",
                origin=groups[name].origin,
            )
        state[name] = "active"
        for child in groups[name].children:
            visit(child, trail + [name])
        state[name] = "done"

    for name in groups:
        visit(name, [])


def _depths(groups: Mapping[str, _GroupDef]) -> dict[str, int]:
    depth = {"all": 0}
    frontier = ["all"]
    while frontier:
        nxt = []
        for name in frontier:
            for child in groups[name].children:
                if depth.get(child, -1) < depth[name] + 1:
                    depth[child] = depth[name] + 1
                    nxt.append(child)
        frontier = nxt
    return depth


def _vars_file(base: Path, name: str) -> list[tuple[Mapping[str, Any], Origin]]:
    """Variables from ``group_vars/NAME`` or ``host_vars/NAME`` (file or directory)."""
    found: list[Path] = []
    for suffix in ("", ".yml", ".yaml", ".json"):
        candidate = base / f"{name}{suffix}"
        if candidate.is_file():
            found.append(candidate)
        elif suffix == "" and candidate.is_dir():
            found.extend(sorted(p for p in candidate.iterdir() if p.suffix in (".yml", ".yaml", ".json")))
    layers: list[tuple[Mapping[str, Any], Origin]] = []
    for path in found:
        data = _load(path)
        if data is None:
            continue
        if not isinstance(data, LineDict):
            raise InventoryError(f"{path}: must be a mapping of variables")
        layers.append((data, data.origin()))
    return layers


def _load(path: Path) -> Any:
    try:
        return load_file(path)
    except YAMLFileError as exc:
        raise InventoryError(exc.message, hint=exc.hint) from None


def _ancestors(name: str, parents: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    stack = [name]
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _merged_vars(host: _HostDef, groups: list[str], reader: _Reader, base: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    layers: list[tuple[Mapping[str, Any], Origin, str]] = []
    for group in groups:
        owner = f"group {group}"
        layers += [(v, o, owner) for v, o in reader.groups[group].vars]
        layers += [(v, o, owner) for v, o in _vars_file(base / "group_vars", group)]
    layers += [(v, o, f"host {host.name}") for v, o in host.vars]
    layers += [(v, o, f"host {host.name}") for v, o in _vars_file(base / "host_vars", host.name)]
    for variables, origin, owner in layers:
        origin_of = variables.origin if isinstance(variables, LineDict) else (lambda _key, o=origin: o)
        merged.update(normalize(variables, origin_of, owner))
    return merged


def _build_host(host: _HostDef, groups: list[str], merged: dict[str, Any], explicit: Mapping[str, Any]) -> Host:
    engine_url = merged.get("docker_host", "")
    overrides = dict(explicit)
    if isinstance(engine_url, str) and engine_url.startswith("ssh://"):
        overrides = {**ssh_overrides_from_url(engine_url, host.origin), **overrides}
    ssh = resolve_ssh(host.name, merged, overrides, host.origin)
    engine = resolve_engine(merged, ssh, host.origin)
    return Host(host.name, tuple(g for g in groups if g != "all"), merged, ssh, engine, host.origin)


def load_inventory(path: str | Path, explicit_ssh: Mapping[str, Any] | None = None, resolve_hosts: bool = True) -> Inventory:
    """Load the inventory at ``path``; ``explicit_ssh`` overrides SSH settings for every host.

    ``resolve_hosts=False``: the file is read and checked, but no host's SSH settings or engine are
    worked out (a command that only needs the inventory's registries must not fail on a host's ssh_config)."""
    path = Path(path)
    if not path.is_file():
        raise InventoryError(
            f"inventory {path} does not exist",
            hint="pass -i FILE, set SHIPPER_INVENTORY, or create inventory/hosts.yml",
        )
    reader = _Reader()
    reader.read_top(_load(path), str(path))
    _check_cycles(reader.groups)
    depth = _depths(reader.groups)
    parents: dict[str, set[str]] = {}
    for group in reader.groups.values():
        for child in group.children:
            parents.setdefault(child, set()).add(group.name)
    hosts: dict[str, Host] = {}
    for host in reader.hosts.values() if resolve_hosts else ():
        direct = {g.name for g in reader.groups.values() if host.name in g.hosts}
        member_of = direct | {a for g in direct for a in _ancestors(g, parents)} | {"all"}
        ordered = sorted(member_of, key=lambda g: (depth.get(g, 0), g))
        merged = _merged_vars(host, ordered, reader, path.parent)
        hosts[host.name] = _build_host(host, ordered, merged, explicit_ssh or {})
    groups = {
        name: Group(name, tuple(dict.fromkeys(g.hosts)), tuple(dict.fromkeys(g.children)), g.origin)
        for name, g in reader.groups.items()
    }
    registries = {name: _registry(name, spec, origin, path.parent) for name, (spec, origin) in reader.registries.items()}
    return Inventory(str(path), hosts, groups, registries)


def _registry(name: str, spec: LineDict, origin: Origin, base: Path) -> RegistrySpec:
    def file(key: str) -> str | None:
        value = spec.get(key)
        return None if value is None else str(base / str(value))

    return RegistrySpec(
        name, str(spec["address"]), file("ca"), None if spec.get("username") is None else str(spec["username"]),
        file("password_file"), bool(spec.get("insecure", False)), origin,
    )  # fmt: skip
