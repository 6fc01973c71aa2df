"""Inventory values that are templates themselves, rendered when a playbook uses them, as Ansible does.

``app_dir: "/srv/{{ inventory_hostname }}"`` in group_vars is ``/srv/web1`` in
a step for web1. Each value is rendered once, after the values it names (so a
rendered value is never rendered again: text that came from an ``!unsafe``
value stays text). A value that cannot be rendered (a loop, an undefined name,
a vault-encrypted value) becomes undefined with the reason, so only a step
that uses it fails, naming it.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping

import jinja2
import jinja2.meta

from shipper.errors import Origin
from shipper.playbook.model import PlaybookError
from shipper.playbook.render import parse, render
from shipper.yamlfile import Unsafe


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return not isinstance(value, Unsafe) and ("{{" in value or "{%" in value)
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    if isinstance(value, dict):
        return any(_templated(v) for v in value.values())
    return False


def _names(value: Any) -> set[str]:
    """The variables a template value refers to (none, if it does not parse: rendering will say why)."""
    if isinstance(value, str) and _templated(value):
        try:
            return set(jinja2.meta.find_undeclared_variables(parse(value)))
        except jinja2.TemplateSyntaxError:
            return set()
    if isinstance(value, list):
        return set().union(*(_names(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_names(v) for v in value.values())) if value else set()
    return set()


def resolve(values: Mapping[str, Any], context: Mapping[str, Any], origin: Origin) -> dict[str, Any]:
    """``values`` (a host's inventory variables) with their templates rendered against ``context`` and each other."""
    resolved: dict[str, Any] = {}
    active: list[str] = []

    def one(name: str) -> Any:
        if name in resolved:
            return resolved[name]
        value = values[name]
        if not _templated(value):
            resolved[name] = value
            return value
        active.append(name)
        for other in _names(value):
            if other in values and other not in context and other not in active:
                one(other)
        scope = {**{k: resolved.get(k, v) for k, v in values.items()}, **context}
        for other in active:  # a value that needs itself, directly or through others, has no value
            loop = " -> ".join(active[active.index(other) :] + [other])
            scope[other] = jinja2.StrictUndefined(hint=f"inventory variable {other!r} refers to itself: {loop}", name=other)
        try:
            result: Any = render(value, scope, origin, f"inventory variable {name}")
        except PlaybookError as exc:
            result = jinja2.StrictUndefined(hint=f"inventory variable {name!r} cannot be rendered: {exc.message}", name=name)
        active.pop()
        resolved[name] = result
        return result

    for key in values:
        one(key)
    return resolved
