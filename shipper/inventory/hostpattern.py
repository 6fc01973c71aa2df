"""Host entries as Ansible writes them: ``web9:2222``, ``[::1]:22``, ``web[01:20].example``, ``db-[a:c]``.

``parse_address`` and ``expand`` follow ansible-core's ``parse_address`` and
``expand_hostname_range`` rule for rule, so a host key means the same host
(and port) to shipper as to Ansible.
"""

from __future__ import annotations

import re
import string

from shipper.errors import InventoryError, Origin

_NUMERIC_RANGE = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_HEX_RANGE = r"\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]"
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_I6 = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"
_I4 = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUMERIC_RANGE})"
_LABEL = rf"(?:[\w]|{_ALNUM_RANGE})(?:[\w_-]|{_ALNUM_RANGE})*(?<![_-])"

_BRACKETED_HOSTPORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOSTPORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_IPV4 = re.compile(rf"^(?:{_I4}\.){{3}}{_I4}$", re.I)
_IPV6 = re.compile(
    rf"^((?:{_I6}:){{7}}{_I6}|(?:{_I6}:){{1,6}}:|(?:{_I6}:)(?::{_I6}){{1,6}}|(?:{_I6}:){{2}}(?::{_I6}){{1,5}}|"
    rf"(?:{_I6}:){{3}}(?::{_I6}){{1,4}}|(?:{_I6}:){{4}}(?::{_I6}){{1,3}}|(?:{_I6}:){{5}}(?::{_I6}){{1,2}}|"
    rf"(?:{_I6}:){{6}}(?::{_I6})|:(?::{_I6}){{1,6}}|{_I6}?::|(?:0:){{6}}(?:{_I6}\.){{3}}{_I6}|"
    rf"::(?:ffff:)?(?:{_I6}\.){{3}}{_I6}|(?:0:){{5}}ffff:(?:{_I6}\.){{3}}{_I6})$",
    re.I,
)
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I | re.UNICODE)
MAX_EXPANSION = 100_000  # hosts one entry may expand to; web[0:99999999] would otherwise fill memory


def parse_address(address: str, allow_ranges: bool = False) -> tuple[str, int | None]:
    """``(host, port)`` of ``address``; ValueError if it is no host (with an optional port)."""
    port = None
    for pattern in (_BRACKETED_HOSTPORT, _HOSTPORT):
        match = pattern.match(address)
        if match:
            address, port = match.group(1), int(match.group(2))
    if not any(p.match(address) for p in (_IPV4, _IPV6, _HOSTNAME)):
        raise ValueError(f"not a valid network host name: {address}")
    if not allow_ranges and "[" in address:
        raise ValueError("a range where none is allowed")
    return address, port


def split_entry(entry: str, origin: Origin) -> tuple[list[str], int | None]:
    """A host entry of an inventory: the host names it expands to and its port, as Ansible reads it."""
    try:
        pattern, port = parse_address(entry, allow_ranges=True)
    except ValueError:
        pattern, port = entry, None
    return (expand(pattern, origin) if "[" in pattern else [pattern]), port


def expand(name: str, origin: Origin) -> list[str]:
    """Ansible's ``expand_hostname_range``: the first ``[a:b(:step)]`` range, then the rest."""
    head, sep, rest = name.partition("[")
    body, sep2, tail = rest.partition("]")
    if not sep or not sep2:
        raise InventoryError(f"host range in {name!r} is not closed", origin=origin)
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise InventoryError(f"host range in {name!r} must be begin:end or begin:end:step", origin=origin)
    begin, end = bounds[0] or "0", bounds[1]
    if not end:
        raise InventoryError(f"host range in {name!r} must give an end", origin=origin)
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
    except ValueError:
        raise InventoryError(f"the step of the host range in {name!r} must be a number", origin=origin) from None
    if step < 1:
        raise InventoryError(f"the step of the host range in {name!r} must be at least 1", origin=origin)
    width = len(begin) if begin[0] == "0" and len(begin) > 1 else 0
    if width and width != len(end):
        raise InventoryError(f"host range in {name!r} must give begin and end with the same number of digits", origin=origin)
    values: list[str]
    if begin in string.ascii_letters and end in string.ascii_letters and len(begin) == len(end) == 1:
        first, last = string.ascii_letters.index(begin), string.ascii_letters.index(end)
        if first > last:
            raise InventoryError(f"host range in {name!r} must have begin <= end", origin=origin)
        values = list(string.ascii_letters[first : last + 1 : step])
    else:
        try:
            first, last = int(begin), int(end)
        except ValueError:
            raise InventoryError(f"host range in {name!r} must be numbers or single letters", origin=origin) from None
        if (last - first) // step + 1 > MAX_EXPANSION:
            raise InventoryError(f"host range in {name!r} names more than {MAX_EXPANSION} hosts", origin=origin)
        values = [str(i).zfill(width) for i in range(first, last + 1, step)]
    names: list[str] = []
    for value in values:
        expanded = head + value + tail
        names.extend(expand(expanded, origin) if "[" in tail else [expanded])
        if len(names) > MAX_EXPANSION:
            raise InventoryError(f"host ranges in {name!r} name more than {MAX_EXPANSION} hosts", origin=origin)
    return names
