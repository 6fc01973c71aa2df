"""The hosts a command acts on: its inventory and its target patterns, warnings said once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from shipper.cli.options import default_inventory
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


def complete_targets(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of a target: the inventory's hosts and groups, after any pattern already typed.

    The inventory is read without resolving any host (no ssh_config lookup runs on a key press);
    any error gives no completions rather than a traceback in the shell."""
    try:
        path = ctx.params.get("inventory_path") or default_inventory()
        inventory = load_inventory(path, resolve_hosts=False)
    except Exception:  # noqa: BLE001 - completion must never fail loudly
        return []
    cut = max(incomplete.rfind(","), incomplete.rfind(":")) + 1
    head, word = incomplete[:cut], incomplete[cut:]
    prefix = word[:1] if word[:1] in ("&", "!") else ""
    names = list(inventory.groups["all"].members) + [g for g in inventory.groups if g != "all"] + ["all"]
    return [CompletionItem(head + prefix + n) for n in dict.fromkeys(names) if n.startswith(word[len(prefix):])]
