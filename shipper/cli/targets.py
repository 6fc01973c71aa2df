"""The hosts a command acts on: its inventory and its target patterns, warnings said once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipper.cli.output import Env
from shipper.inventory import Host, Inventory, adhoc_host, load_inventory, select
from shipper.inventory.targets import split_pattern


def _adhoc_only(expression: str) -> bool:
    terms = split_pattern(expression)
    return bool(terms) and all(t.startswith("ssh://") for t in terms)


def open_inventory(path: str, *expressions: str, **options: Any) -> Inventory:
    """The inventory at ``path``; none is needed when every target is an ``ssh://`` URL and ``path`` is absent."""
    if expressions and all(_adhoc_only(e) for e in expressions) and not Path(path).expanduser().exists() and "," not in path:
        return load_inventory(",", **options)  # an empty host list
    return load_inventory(path, **options)


def choose(env: Env, inventory: Inventory, expression: str, adhoc: bool = True) -> list[Host]:
    """The hosts ``expression`` names (Ansible's patterns, and ``ssh://`` URLs where ``adhoc``), warning on stderr."""
    selection = select(inventory, expression, adhoc=adhoc_host if adhoc else None)
    for warning in selection.warnings:
        print(f"warning: {warning}", file=env.stderr)
    return list(selection)
