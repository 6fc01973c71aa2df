"""The fleet model: how long moving one image to N hosts takes, flat against tiered, from a link's measured rates.

Used by bench/fleet.py, which measures its inputs (``Calibration``) on the
namespaced lab and checks its prediction against a measured 24-host run.

Every link has the same goodput ``g`` (image bytes a second, after Ethernet,
IP, TCP and SSH or TLS headers), both ways; ``S`` is the image's size.

- **Flat SSH fan-out**: the source's uplink carries one copy per target (each
  target's downlink one): ``fixed + N·S/g``.
- **Tiered**, sites of ``m`` hosts, ``k = ⌈N/m⌉`` caches, as shipper does it:
  the source uploads once (``S/g``); shipper fills every cache at once, so the
  central registry's uplink carries ``c`` copies per cache (``c`` measured:
  about 1, the fill's questions included) while each cache's downlink carries
  ``c``: ``max(k·c·S/f, c·S)/g`` with the central's uplink ``f`` times a
  host's; then each site pulls from its filled cache, whose uplink carries
  ``m`` copies: ``fixed + S/g + max(k·c/f, c)·S/g + m·S/g``.

Transfers in one phase overlap and a link's copies share it evenly; start-up,
planning and the targets' own loads are in ``fixed`` (from a one-target move).

**The floor of any tiered schedule** (``tiered_floor``), however its stages
overlap, under the issue's own limits (the source and the central registry
send each cache about one copy, one cache per site) and the registry's (a
blob is served only once whole: an upload once committed, a cache's copy once
kept; asking a proxy for a blob it is still fetching costs its upstream one
more copy). With ``L`` equal layers, the first layer must cross the source's
uplink (``S/(L·g)``), then the central registry's uplink must carry a layer
to each of the ``k`` caches before the last of them holds anything
(``k·S/(L·f·g)``); that cache's uplink then carries its ``m`` hosts' copies
(``m·S/g``). Against the flat fan-out's ``N·S/g``, at zero fixed costs:
``(m + (1 + k/f)/L) / N``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

UNITS = {"bit": 1 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9}


def rate_bytes(rate: str) -> float:
    """tc's rate syntax (``100mbit``, ``12mbps``) in bytes a second."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]+)", rate.strip().lower())
    if not found or found.group(2) not in UNITS:
        raise ValueError(f"not a tc rate: {rate!r}")
    return float(found.group(1)) * UNITS[found.group(2)]


@dataclass(frozen=True)
class Calibration:
    size: int  # S, bytes
    goodput: float  # g, image bytes a second on one link
    flat_fixed: float  # seconds a flat move costs beyond its bytes (one target)
    tiered_fixed: float  # the same for a tiered move
    reads_per_cache: float  # c: copies of the image the central registry sends a cache


def flat_seconds(cal: Calibration, hosts: int) -> float:
    return cal.flat_fixed + hosts * cal.size / cal.goodput


def tiered_seconds(cal: Calibration, hosts: int, per_site: int, central_factor: float = 1.0) -> float:
    caches = math.ceil(hosts / per_site)
    copy = cal.size / cal.goodput
    fill = max(caches * cal.reads_per_cache / central_factor, cal.reads_per_cache) * copy
    return cal.tiered_fixed + copy + fill + min(per_site, hosts) * copy


def tiered_floor(hosts: int, per_site: int, layers: int, central_factor: float = 1.0) -> float:
    """The least time any tiered schedule can take, as a fraction of the flat fan-out's, both at zero fixed costs."""
    caches = math.ceil(hosts / per_site)
    return (min(per_site, hosts) + (1 + caches / central_factor) / layers) / hosts


def table(cal: Calibration, per_site: int, sizes: tuple[int, ...] = (24, 100, 500, 2000)) -> str:
    """The model's table in Markdown: minutes for each fleet size, flat and tiered (central on a host's link, and 10× it)."""
    lines = [
        f"| hosts | flat SSH fan-out min | tiered, sites of {per_site} min | vs flat | tiered, central on a 10× link min | vs flat |",
        "|---|---|---|---|---|---|",
    ]
    for hosts in sizes:
        flat = flat_seconds(cal, hosts)
        tiered, fast = tiered_seconds(cal, hosts, per_site), tiered_seconds(cal, hosts, per_site, central_factor=10)
        lines.append(f"| {hosts} | {flat / 60:.1f} | {tiered / 60:.1f} | {tiered / flat:.2f} | {fast / 60:.1f} | {fast / flat:.2f} |")
    return "\n".join(lines)
