"""A host's effective variables, merged in Ansible's order (``ansible-inventory --host NAME``).

Lowest first, each level replacing whole values (``hash_behaviour=replace``):

1. ``all``'s vars written in the inventory;
2. every other group's vars written in the inventory, groups ordered by
   depth, then ``ansible_group_priority``, then name;
3. ``group_vars/all`` beside each inventory source;
4. ``group_vars/GROUP`` beside each source, groups in the same order;
5. the host's vars written in the inventory (``host:port`` gives ``ansible_port``);
6. ``host_vars/HOST`` beside each source.

So every file under ``group_vars/`` beats every group variable written in the
inventory: with ``group_vars/all.yml: ansible_user: deploy`` and
``web: vars: {ansible_user: webuser}`` a host of web logs in as deploy, as in
Ansible.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from shipper.errors import Origin
from shipper.inventory.graph import Graph, Var
from shipper.inventory.vars_files import vars_layers
from shipper.yamlfile import LineDict


class VarsFiles:
    """``group_vars/`` and ``host_vars/`` of the inventory's base directories, each file read once."""

    def __init__(self, bases: list[Path]) -> None:
        self.bases = bases
        self._cache: dict[tuple[Path, str, str], list[tuple[LineDict, str]]] = {}

    def layers(self, kind: str, names: list[str]) -> list[dict[str, Var]]:
        """Ansible's loop: each source's directory in turn, and in it each name in turn."""
        found = []
        for base in self.bases:
            for name in names:
                key = (base, kind, name)
                if key not in self._cache:
                    self._cache[key] = vars_layers(base, kind, name)
                for data, label in self._cache[key]:
                    found.append({str(k): Var(v, Origin(data.path, data.key_lines.get(k)), label) for k, v in data.items()})
        return found


def ordered_groups(graph: Graph, host: str) -> list[str]:
    """The host's groups other than ``all``, in Ansible's order for variables."""
    groups = [graph.groups[g] for g in graph.host_groups(host) if g != "all"]
    return [g.name for g in sorted(groups, key=lambda g: (g.depth, g.priority, g.name))]


def effective_vars(graph: Graph, host: str, files: VarsFiles) -> dict[str, Var]:
    groups = ordered_groups(graph, host)
    layers: list[dict[str, Var]] = [graph.groups["all"].vars]
    layers += [graph.groups[g].vars for g in groups]
    layers += files.layers("group_vars", ["all"])
    layers += files.layers("group_vars", groups)
    layers.append(graph.hosts[host].vars)
    layers += files.layers("host_vars", [host])
    merged: dict[str, Var] = {}
    for rank, layer in enumerate(layers):
        merged.update({key: replace(var, rank=rank) for key, var in layer.items()})
    return merged
