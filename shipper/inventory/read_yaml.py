"""YAML inventories, read as Ansible's ``yaml`` inventory plugin reads them.

Top-level keys are groups (``all`` among them); a group holds ``hosts:``,
``children:`` and ``vars:``, processed in the order written; a host key may
carry a port (``web9:2222``) or a range (``web[01:03]``). Two differences,
both on the side of caution: a key other than those three is an error (Ansible
warns and skips it, so a misspelt ``host:`` would silently drop hosts), and so
is a key given twice. ``registries:`` at the top is shipper's own section.
"""

from __future__ import annotations

from typing import Any

from shipper.errors import InventoryError, Origin
from shipper.inventory.graph import Graph
from shipper.inventory.hostpattern import split_entry
from shipper.yamlfile import LineDict

GROUP_KEYS = ("hosts", "children", "vars")
SHIPPER_SECTIONS = ("registries",)


def looks_like_plugin_config(data: Any) -> bool:
    return isinstance(data, dict) and bool(data.get("plugin"))


def read_yaml(data: LineDict, graph: Graph) -> None:
    """Add the groups and hosts of a parsed YAML inventory to ``graph``."""
    for name, body in data.items():
        if name in SHIPPER_SECTIONS:
            continue
        _group(graph, _name(name, data.origin(name), "group"), body, data.origin(name))


def _group(graph: Graph, name: str, body: Any, origin: Origin) -> str:
    if body is not None and not isinstance(body, LineDict):
        raise InventoryError(
            f"group {name!r} must be a mapping with hosts:, children: or vars:, not {_kind(body)}", origin=origin,
            hint="list hosts under 'hosts:' each followed by ':'" if isinstance(body, list) else None,
        )  # fmt: skip
    graph.add_group(name, origin)
    if body is None:
        return name
    for key, section in body.items():
        where = body.origin(key)
        if key not in GROUP_KEYS:
            hint = "a group holds only hosts:, children: and vars:"
            if isinstance(key, str) and key.rstrip("s") + "s" in GROUP_KEYS:
                hint = f"did you mean '{key.rstrip('s')}s:'? " + hint
            raise InventoryError(f"unknown key {key!r} in group {name!r}", hint=hint, origin=where)
        if isinstance(section, str):  # Ansible: "hosts: web1" is one host
            section = _single(section, where)
        if section is None:
            continue
        if not isinstance(section, LineDict):
            raise InventoryError(
                f"{key} of group {name!r} must be a mapping, not {_kind(section)}",
                hint=f"write each name on its own line followed by ':' under '{key}:'", origin=where,
            )  # fmt: skip
        if key == "vars":
            for var, value in section.items():
                graph.set_group_var(name, var, value, section.origin(var))
        elif key == "children":
            for child, child_body in section.items():
                child_origin = section.origin(child)
                child_name = _group(graph, _name(child, child_origin, "group"), child_body, child_origin)
                graph.add_child(name, child_name, child_origin)
        else:
            for entry, variables in section.items():
                _hosts(graph, name, entry, variables, section.origin(entry))
    return name


def _hosts(graph: Graph, group: str, entry: Any, variables: Any, origin: Origin) -> None:
    if not isinstance(entry, str):
        raise InventoryError(f"host {entry!r} must be a string", hint="quote numbers: '\"10\":'", origin=origin)
    if variables is not None and not isinstance(variables, LineDict):
        raise InventoryError(
            f"host {entry!r} must be followed by a mapping of variables (or nothing), not {_kind(variables)}",
            hint=f"write '{entry}:' and put its address under it as 'ansible_host: {variables}'" if isinstance(variables, str) else None,
            origin=origin,
        )
    names, port = split_entry(entry, origin)
    for host in names:
        graph.add_host(host, origin, group, port)
        for key, value in (variables or {}).items():
            graph.set_host_var(host, key, value, variables.origin(key) if variables is not None else origin)


def _single(name: str, origin: Origin) -> LineDict:
    section = LineDict()
    section.path, section.line = origin.path, origin.line
    section[name] = None
    section.key_lines[name] = origin.line or 0
    return section


def _name(value: Any, origin: Origin, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InventoryError(f"{value!r} is not a valid {what} name", hint="quote it", origin=origin)
    return value


def _kind(value: Any) -> str:
    return {str: "a string", list: "a list", int: "a number", bool: "true/false"}.get(type(value), type(value).__name__)
