"""INI inventories (Ansible's default format), read as Ansible's ``ini`` plugin reads them.

::

    mail.example.com            # before any section: ungrouped
    [web]
    web1:2222 ansible_user=deploy tier="front end"
    web[02:09]
    [web:vars]
    http_port=8080
    [site:children]
    web

Values go through ``ast.literal_eval`` as in Ansible (``8080`` is a number,
``True`` a boolean, ``[1, 2]`` a list; ``yes`` and ``010`` stay strings). On a
host line, ``#`` starts a comment (the line is split like a shell's); in a
``:vars`` section it does not. A ``:children`` section may name a group that is
defined further down; one that is never defined is an error, as in Ansible.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from shipper.errors import InventoryError, Origin
from shipper.inventory.graph import Graph
from shipper.inventory.hostpattern import split_entry

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_COMMENT = ("#", ";")


def read_ini(text: str, path: str, graph: Graph) -> None:
    """Add the groups and hosts of the INI inventory ``text`` (read from ``path``) to ``graph``."""
    pending: dict[str, dict[str, Any]] = {}  # groups named before they are defined
    group, state = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        origin = Origin(path, number)
        line = raw.strip()
        if not line or line[0] in _COMMENT:
            continue
        section = _SECTION.match(line)
        if section:
            group, state = section.group(1), section.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise InventoryError(f"section [{group}:{state}] has an unknown type {state!r}", hint="use [NAME], [NAME:vars] or [NAME:children]", origin=origin)
            if group not in graph.groups:
                if state == "vars" and group not in pending:
                    pending[group] = {"line": origin, "state": state}
                graph.add_group(group, origin)
            if group in pending and state != "vars":
                if pending[group]["state"] == "children":
                    _add_pending_children(graph, group, pending)
                else:
                    del pending[group]
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InventoryError(f"invalid section {line[:100]!r}", hint="a section is [NAME], [NAME:vars] or [NAME:children], with no spaces", origin=origin)
        if state == "hosts":
            _host_line(graph, group, line, origin)
        elif state == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise InventoryError(f"expected key=value in [{group}:vars], got {line[:100]!r}", origin=origin)
            graph.set_group_var(group, key.strip(), parse_value(value.strip()), origin)
        else:
            match = _GROUP_NAME.match(line)
            if not match:
                raise InventoryError(f"expected a group name in [{group}:children], got {line[:100]!r}", origin=origin)
            child = match.group(1)
            if child in graph.groups:
                graph.add_child(group, child, origin)
            elif child in pending:
                pending[child].setdefault("parents", []).append(group)
            else:
                pending[child] = {"line": origin, "state": "children", "parents": [group]}
    for name, declaration in pending.items():
        if declaration["state"] == "vars":
            raise InventoryError(f"section [{name}:vars] is for a group that is defined nowhere", hint=f"add a [{name}] section", origin=declaration["line"])
        raise InventoryError(
            f"section [{declaration['parents'][-1]}:children] names group {name!r}, which is defined nowhere",
            hint=f"add a [{name}] section (it may be empty)", origin=declaration["line"],
        )  # fmt: skip


def _add_pending_children(graph: Graph, group: str, pending: dict[str, dict[str, Any]]) -> None:
    declaration = pending.pop(group)
    for parent in declaration["parents"]:
        graph.add_child(parent, group, declaration["line"])
        if parent in pending and pending[parent]["state"] == "children":
            _add_pending_children(graph, parent, pending)


def _host_line(graph: Graph, group: str, line: str, origin: Origin) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError(f"cannot read host line {line[:100]!r}: {exc}", hint="close the quotes", origin=origin) from None
    if not tokens:
        return
    entry = tokens[0]
    names, port = split_entry(entry, origin)
    if entry.strip().endswith(":") and port is None:
        raise InventoryError(f"host {entry!r} ends in ':', which is kept for a port", origin=origin)
    if any(name.strip() == "---" for name in names):
        raise InventoryError("'---' is not a host: this looks like a YAML file", hint="name the file .yml", origin=origin)
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep:
            raise InventoryError(f"expected key=value after host {entry!r}, got {token[:100]!r}", origin=origin)
        variables[key] = parse_value(value)
    for name in names:
        graph.add_host(name, origin, group, port)
        for key, value in variables.items():
            graph.set_host_var(name, key, value, origin)


def parse_value(text: str) -> Any:
    """Ansible's INI value: a Python literal where ``ast.literal_eval`` reads one, else the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text) if len(text) <= 65536 else text  # literal_eval of deep nesting can recurse far
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = text
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(_plain(k)) if not isinstance(k, (int, float, bool)) else k: _plain(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value
