"""Groups, hosts and their own variables, as Ansible's InventoryData holds them.

Every reader (YAML, INI, scripts and JSON, host lists) fills one ``Graph``
with the calls Ansible's inventory plugins make: ``add_group``, ``add_host``
(with a port from ``host:port``), ``add_child``, ``set_group_var`` and
``set_host_var``. ``reconcile`` then applies Ansible's rules: groups without a
parent become children of ``all``, hosts in no group join ``ungrouped``, and
each group gets its depth (the longest path from ``all``) that, with
``ansible_group_priority`` and the name, orders group variables.

Each variable keeps where it was written, so ``shipper hosts -v`` can say it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

from shipper.errors import InventoryError, Origin


_GROUP_NAME = re.compile(r"[^\s,:&!~\[\]\x00-\x1f\x7f][^\s,:\[\]\x00-\x1f\x7f]{0,254}")
_HOST_NAME = re.compile(r"[^\s,\x00-\x1f\x7f]{1,255}")


@dataclass(frozen=True)
class Var:
    """One variable's value, the file and line it was written at, and the level it belongs to."""

    value: Any
    origin: Origin
    level: str  # "group web", "host a", "group_vars/web.yml"...
    rank: int = field(default=0, compare=False)  # the level's place in the host's merge order, once merged

    def describe(self) -> str:
        """``group web (hosts.yml line 3)``; a group_vars or host_vars file is its own description."""
        return f"{self.level} ({self.origin})" if self.level.startswith(("group ", "host ")) else str(self.origin)


@dataclass
class GroupNode:
    name: str
    origin: Origin
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Var] = field(default_factory=dict)
    priority: int = 1  # ansible_group_priority, from the inventory only (never from group_vars/)
    depth: int = 0


@dataclass
class HostNode:
    name: str
    origin: Origin
    groups: list[str] = field(default_factory=list)  # the groups that list it directly
    vars: dict[str, Var] = field(default_factory=dict)


class Graph:
    """Ansible's inventory data: ``all`` and ``ungrouped`` exist from the start."""

    def __init__(self) -> None:
        self.groups: dict[str, GroupNode] = {}
        self.hosts: dict[str, HostNode] = {}
        nowhere = Origin("<implicit>", None)
        self.add_group("all", nowhere)
        self.add_group("ungrouped", nowhere)
        self.add_child("all", "ungrouped", nowhere)

    def add_group(self, name: str, origin: Origin) -> GroupNode:
        if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
            raise InventoryError(
                f"{str(name)[:100]!r} is not a valid group name",
                hint="a group name has no spaces, no control characters and none of , : & ! ~ [ ] (host patterns use them)",
                origin=origin,
            )
        if name not in self.groups:
            self.groups[name] = GroupNode(name, origin)
        return self.groups[name]

    def add_host(self, name: str, origin: Origin, group: str | None = None, port: int | None = None) -> HostNode:
        """Ansible's ``add_host``: a port applies only where the host is first seen."""
        if not isinstance(name, str) or not _HOST_NAME.fullmatch(name):
            raise InventoryError(f"{str(name)[:100]!r} is not a valid host name", hint="a host name has no spaces, no control characters and no ','", origin=origin)
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = HostNode(name, origin)
            if port:
                host.vars["ansible_port"] = Var(int(port), origin, f"host {name}")
        if group is not None:
            node = self.groups[group]
            if name not in node.hosts:
                node.hosts.append(name)
                host.groups.append(group)
        return host

    def add_child(self, parent: str, child: str, origin: Origin) -> None:
        """``child`` (a group) under ``parent``; a loop is refused where it would close."""
        if child == parent or parent in self.descendants(child):
            cycle = [parent, *self._path(child, parent)]
            raise InventoryError(
                f"groups form a cycle: {' -> '.join(cycle)}",
                hint=f"a group cannot contain itself; remove {child!r} from the children of {parent!r}", origin=origin,
            )  # fmt: skip
        node = self.groups[parent]
        if child not in node.children:
            node.children.append(child)
            self.groups[child].parents.append(parent)

    def set_group_var(self, group: str, key: str, value: Any, origin: Origin) -> None:
        node = self.groups[group]
        if key == "ansible_group_priority":  # Ansible keeps it as the group's rank, not as a variable
            try:
                node.priority = int(value)
            except (TypeError, ValueError):
                raise InventoryError(f"ansible_group_priority of group {group!r} must be a number, not {value!r}", origin=origin) from None
            return
        node.vars[_key(key, origin)] = Var(value, origin, f"group {group}")

    def set_host_var(self, host: str, key: str, value: Any, origin: Origin) -> None:
        self.hosts[host].vars[_key(key, origin)] = Var(value, origin, f"host {host}")

    def descendants(self, group: str) -> list[str]:
        """``group``'s child groups, theirs, and so on: each once, nearest first."""
        return self._reach(group, lambda node: node.children)

    def ancestors(self, group: str) -> list[str]:
        """``group``'s parents, theirs, and so on: each once, nearest first."""
        return self._reach(group, lambda node: node.parents)

    def _reach(self, group: str, step: Callable[[GroupNode], list[str]]) -> list[str]:
        seen: dict[str, None] = {}
        frontier = list(step(self.groups[group]))
        while frontier:
            name = frontier.pop(0)
            if name not in seen:
                seen[name] = None
                frontier.extend(step(self.groups[name]))
        return list(seen)

    def _path(self, start: str, goal: str) -> list[str]:
        """The group names from ``start`` down to ``goal`` (which descends from it, or is it)."""
        trails = [[start]]
        while trails:
            trail = trails.pop(0)
            if trail[-1] == goal:
                return trail
            trails.extend(trail + [c] for c in self.groups[trail[-1]].children if c not in trail)
        return [start, goal]

    def host_groups(self, host: str) -> list[str]:
        """Every group ``host`` belongs to: those listing it and their ancestors (``all`` included)."""
        found: dict[str, None] = {}
        for group in self.hosts[host].groups:
            found[group] = None
            found.update(dict.fromkeys(self.ancestors(group)))
        return list(found)

    def group_hosts(self, group: str) -> list[str]:
        """Ansible's ``group.get_hosts()``: the group's own hosts, then its descendants', each once."""
        found: dict[str, None] = {}
        for name in [group, *self.descendants(group)]:
            found.update(dict.fromkeys(self.groups[name].hosts))
        return list(found)

    def reconcile(self) -> None:
        """Ansible's ``reconcile_inventory``: roots under ``all``, lone hosts in ``ungrouped``, depths."""
        for name, node in list(self.groups.items()):
            if name != "all" and not node.parents:
                self.add_child("all", name, node.origin)
        ungrouped = self.groups["ungrouped"]
        for name, host in self.hosts.items():
            groups = set(self.host_groups(name))
            if "ungrouped" in groups:
                if groups - {"all", "ungrouped"}:
                    ungrouped.hosts.remove(name)
                    host.groups.remove("ungrouped")
            elif groups <= {"all"}:
                self.add_host(name, host.origin, "ungrouped")
        self._set_depths()

    def _set_depths(self) -> None:
        # The longest path from all, which is what Ansible's incremental depth bookkeeping arrives at.
        depth: dict[str, int] = {"all": 0}
        order = self._topological()
        for name in order:
            for child in self.groups[name].children:
                depth[child] = max(depth.get(child, 0), depth.get(name, 0) + 1)
        for name, node in self.groups.items():
            node.depth = depth.get(name, 0)

    def _topological(self) -> list[str]:
        incoming = {name: len(node.parents) for name, node in self.groups.items()}
        ready = [name for name, count in incoming.items() if count == 0]
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for child in self.groups[name].children:
                incoming[child] -= 1
                if incoming[child] == 0:
                    ready.append(child)
        return order


def _key(key: Any, origin: Origin) -> str:
    if not isinstance(key, str) or not key:
        raise InventoryError(f"variable name {key!r} must be a non-empty string", origin=origin)
    return key
