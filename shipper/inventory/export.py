"""The inventory as ``ansible-inventory --list`` prints it, so the two can be compared line for line.

Groups reachable from ``all`` with their own hosts and children (empty ones
left out, as Ansible leaves them out), and ``_meta.hostvars`` with every
host's effective variables. ``!unsafe`` and ``!vault`` values are written as
Ansible writes them (``{"__ansible_unsafe": ...}``, ``{"__ansible_vault":
...}``), which is also what shipper reads back from such JSON.
"""

from __future__ import annotations

from typing import Any

from shipper.inventory.model import Inventory
from shipper.yamlfile import Unsafe, Vaulted


def json_value(value: Any) -> Any:
    """A variable's value as JSON, with Ansible's markers for the tagged kinds."""
    if isinstance(value, Unsafe):
        return {"__ansible_unsafe": str(value)}
    if isinstance(value, Vaulted):
        return {"__ansible_vault": value.ciphertext}
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # dates and the like, as Ansible's JSON encoder writes them


def as_list(inventory: Inventory) -> dict[str, Any]:
    result: dict[str, Any] = {}
    seen: set[str] = set()

    def add(name: str) -> None:
        group = inventory.groups[name]
        body: dict[str, Any] = {}
        if name != "all":
            hosts = [h for h in group.hosts if h in inventory.hosts]
            if hosts:
                body["hosts"] = hosts
        if group.children:
            body["children"] = list(group.children)
        if body:
            result[name] = body
        for child in group.children:
            if child not in seen:
                seen.add(child)
                add(child)

    add("all")
    hostvars = {name: {k: json_value(v) for k, v in host.vars.items()} for name, host in inventory.hosts.items()}
    return {"_meta": {"hostvars": {k: v for k, v in hostvars.items() if v}}, **result}
