"""Target expressions: Ansible's host patterns, wherever shipper takes a target.

``web`` (a group: its hosts and its children's), ``web1`` (a host),
``web:db`` or ``web,db`` (union), ``web:&prod`` (intersection), ``all:!web``
(exclusion), ``web*`` (glob over host and group names), ``~web0[1-3]`` (a
regular expression, matched from the start), ``web[0]``, ``web[1:3]``
(subscripts), ``all``, ``ungrouped``. As in Ansible, the plain terms are
taken first in the order given, then the ``&`` terms, then the ``!`` terms;
a host is acted on once.

``ssh://user@host:port`` names a host outside the inventory (as ``docker
-H`` and ``docker pussh`` users write it).

Where shipper differs, on purpose: a plain name that is neither a host nor a
group is an error with suggestions (Ansible warns and goes on), since a
misspelt target would otherwise quietly do nothing. An empty group, or a
glob or regex that matches nothing, is a warning (``Selection.warnings``).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable

from shipper.errors import HostNotFound
from shipper.inventory.hostpattern import parse_address
from shipper.inventory.model import Host, Inventory

_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
_SPLIT = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


class Selection(list[Host]):
    """The hosts a target expression chose, and what the user should hear about it."""

    def __init__(self, hosts: list[Host], warnings: list[str]) -> None:
        super().__init__(hosts)
        self.warnings = warnings


def split_pattern(expression: str) -> list[str]:
    """Ansible's ``split_host_pattern``: commas, else colons that are no IPv6 address, range or port."""
    if "," in expression:
        parts = expression.split(",")
    elif expression.startswith("ssh://"):
        parts = [expression]
    else:
        try:
            parse_address(expression, allow_ranges=True)
            parts = [expression]
        except ValueError:
            parts = _SPLIT.findall(expression)
    return [p.strip() for p in parts if p.strip()]


def order_terms(terms: list[str]) -> list[str]:
    plain = [t for t in terms if t[0] not in "!&"]
    both = [t for t in terms if t[0] == "&"]
    excluded = [t for t in terms if t[0] == "!"]
    return (plain or ["all"]) + both + excluded


def select(inventory: Inventory, expression: str, adhoc: Callable[[str], Host] | None = None) -> Selection:
    """The hosts ``expression`` names. ``adhoc`` builds a host from an ``ssh://`` term (none: refused)."""
    terms = split_pattern(expression)
    if not terms:
        raise HostNotFound("no target given", hint="name a host, a group, or a pattern such as 'web:&prod' or 'all:!db'")
    warnings: list[str] = []
    chosen: dict[str, Host] = {}
    for term in order_terms(terms):
        if term.startswith("ssh://"):
            if adhoc is None:
                raise HostNotFound(f"{term!r}: this command takes no ad-hoc host", hint="name it in the inventory")
            host = adhoc(term)
            chosen.setdefault(host.name, host)
            continue
        if term in inventory.hosts:
            chosen.setdefault(term, inventory.hosts[term])
            continue
        matched = _match(inventory, term.lstrip("&!") if term[0] in "&!" else term, warnings)
        names = set(matched)
        if term[0] == "!":
            chosen = {n: h for n, h in chosen.items() if n not in names}
        elif term[0] == "&":
            chosen = {n: h for n, h in chosen.items() if n in names}
        else:
            for name in matched:
                chosen.setdefault(name, inventory.hosts[name])
    if not chosen and not warnings:
        warnings.append(f"{expression!r} matches no host: nothing to do")
    return Selection(list(chosen.values()), warnings)


def _match(inventory: Inventory, term: str, warnings: list[str]) -> list[str]:
    if not term:
        raise HostNotFound("an empty term after '&' or '!'", hint="write 'web:&prod' or 'all:!db'")
    expression, subscript = _split_subscript(term)
    names = _enumerate(inventory, expression, warnings)
    if subscript is None:
        return names
    start, end = subscript
    try:
        if end is None:
            return [names[start]]
        return names[start : (len(names) - 1 if end == -1 else end) + 1]
    except IndexError:
        raise HostNotFound(f"{term!r}: {expression!r} has {len(names)} hosts, so [{start}] names none") from None


def _split_subscript(term: str) -> tuple[str, tuple[int, int | None] | None]:
    if term.startswith("~"):
        return term, None
    match = _SUBSCRIPT.match(term)
    if not match:
        return term, None
    expression, index, start, _sep, end = match.groups()
    if index:
        return expression, (int(index), None)
    return expression, (int(start), int(end) if end else -1)


def _enumerate(inventory: Inventory, term: str, warnings: list[str]) -> list[str]:
    regex = term.startswith("~")
    try:
        pattern = re.compile(term[1:] if regex else fnmatch.translate(term))
    except re.error as exc:
        raise HostNotFound(f"{term!r} is not a valid pattern: {exc}") from None
    found: dict[str, None] = {}
    groups = [g for g in inventory.groups if pattern.match(g)]
    for group in groups:
        found.update(dict.fromkeys(inventory.groups[group].members))
    wildcard = regex or any(c in term for c in ".?*[")
    if not groups or wildcard:
        found.update(dict.fromkeys(h for h in inventory.hosts if pattern.match(h)))
    if found:
        return [h for h in found if h in inventory.hosts]
    if groups:
        warnings.append(f"group {', '.join(repr(g) for g in groups)} has no hosts" if len(groups) == 1 else f"groups {', '.join(groups)} have no hosts")
    elif wildcard:
        warnings.append(f"{term!r} matches no host or group")
    elif term != "all":
        raise HostNotFound(f"{term!r} is neither a host nor a group of {inventory.path}", hint=_hint(inventory, term))
    return []


def _hint(inventory: Inventory, term: str) -> str:
    candidates = list(inventory.hosts) + list(inventory.groups)
    close = difflib.get_close_matches(term, candidates, n=3, cutoff=0.5)
    groups = [g for g in inventory.groups if g not in ("all", "ungrouped")]
    hosts = list(inventory.hosts)
    known = f"hosts: {', '.join(hosts[:20]) or '(none)'}{' ...' if len(hosts) > 20 else ''}; groups: {', '.join(groups[:20]) or '(none)'}"
    if close:
        return f"did you mean {' or '.join(repr(c) for c in close)}? ({known})"
    return known
