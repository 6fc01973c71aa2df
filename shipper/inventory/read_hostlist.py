"""Ad-hoc inventories: ``-i 'web1,web2:2222,'``, as ``ansible -i`` takes them (Ansible's ``host_list``)."""

from __future__ import annotations

from shipper.errors import Origin
from shipper.inventory.graph import Graph
from shipper.inventory.hostpattern import parse_address


def is_host_list(spec: str) -> bool:
    """A comma in something that is not a file: Ansible's rule for a host list."""
    return "," in spec


def read_host_list(spec: str, graph: Graph) -> None:
    origin = Origin("-i", None)
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        try:
            host, port = parse_address(entry)
        except ValueError:
            host, port = entry, None
        if host not in graph.hosts:
            graph.add_host(host, origin, "ungrouped", port)
