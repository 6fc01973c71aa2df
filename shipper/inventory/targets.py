"""Target expressions: which hosts a command acts on.

``a`` (a host), ``web`` (a group, with its child groups), ``a,web`` (a union),
``web*`` (a glob over host and group names), ``all``. Order follows the
expression, then inventory order inside a group; a host named twice is
acted on once.
"""

from __future__ import annotations

import difflib
import fnmatch

from shipper.errors import HostNotFound
from shipper.inventory.model import Host, Inventory


def _group_members(inventory: Inventory, name: str) -> list[str]:
    seen: list[str] = []
    stack = [name]
    visited: set[str] = set()
    while stack:
        group = inventory.groups[stack.pop(0)]
        if group.name in visited:
            continue
        visited.add(group.name)
        seen.extend(group.hosts)
        stack.extend(group.children)
    if name == "all":
        seen.extend(inventory.hosts)  # hosts listed only under a group's children still belong to all
    return list(dict.fromkeys(h for h in seen if h in inventory.hosts))


def _match(inventory: Inventory, term: str) -> list[str]:
    if term in inventory.hosts:
        return [term]
    if term in inventory.groups:
        return _group_members(inventory, term)
    if any(c in term for c in "*?["):
        names = [h for h in inventory.hosts if fnmatch.fnmatchcase(h, term)]
        for group in inventory.groups:
            if fnmatch.fnmatchcase(group, term):
                names.extend(_group_members(inventory, group))
        return names
    return []


def select(inventory: Inventory, expression: str) -> list[Host]:
    """The hosts that ``expression`` names; ``HostNotFound`` if any term matches nothing."""
    terms = [t.strip() for t in expression.split(",") if t.strip()]
    if not terms:
        raise HostNotFound("no target given", hint="name a host, a group, or a comma list of both")
    names: list[str] = []
    for term in terms:
        matched = _match(inventory, term)
        if not matched:
            raise HostNotFound(f"{term!r} is neither a host nor a group of {inventory.path}", hint=_hint(inventory, term))
        names.extend(matched)
    return [inventory.hosts[name] for name in dict.fromkeys(names)]


def _hint(inventory: Inventory, term: str) -> str:
    candidates = list(inventory.hosts) + list(inventory.groups)
    close = difflib.get_close_matches(term, candidates, n=3, cutoff=0.5)
    known = f"hosts: {', '.join(inventory.hosts) or '(none)'}; groups: {', '.join(g for g in inventory.groups if g != 'all')}"
    if close:
        return f"did you mean {' or '.join(repr(c) for c in close)}? ({known})"
    return known
