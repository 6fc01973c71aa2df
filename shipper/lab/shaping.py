"""Shaped links for the lab: traffic to a lab host's address held to a rate, with ``tc`` on loopback.

Lab hosts live on loopback addresses, so every byte a move sends to a host
crosses ``lo`` with that host's address as its destination. ``shaped`` puts an
``htb`` qdisc at the root of ``lo`` whose default class (100 Gbit/s: unshaped;
measured, loopback keeps its speed) takes all traffic, and gives each shaped
address a class of its own at its rate, chosen by a ``u32`` filter on the
destination address (the kernel here has no ``prio`` qdisc). It
is what a WAN link of that rate does to a stream's throughput; the kernel here
has no ``netem``, so there is no added delay or loss. One shaped set at a time
per machine: ``lo`` has one root.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator, Mapping

MAX_SHAPED = 64
BURST = "256k"  # above the 64 KiB segments loopback's offloads make


def _tc(*args: str, check: bool = True) -> None:
    done = subprocess.run(["tc", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"tc {' '.join(args)} failed: {done.stderr.strip()}")


def clear(device: str = "lo") -> None:
    """Back to the device's default (for a lab that did not end cleanly)."""
    _tc("qdisc", "del", "dev", device, "root", check=False)


class Links:
    """The shaped links while ``shaped`` holds them: the bytes each has carried, from tc's own counters."""

    def __init__(self, device: str, classes: dict[str, str]) -> None:
        self.device, self.classes = device, classes

    def sent(self, address: str) -> int:
        """Bytes sent to ``address`` over its link so far (IP packets, headers included)."""
        shown = subprocess.run(["tc", "-s", "class", "show", "dev", self.device, "classid", self.classes[address]], capture_output=True, text=True).stdout
        found = re.search(r"Sent (\d+) bytes", shown)
        return int(found.group(1)) if found else 0


@contextlib.contextmanager
def shaped(rates: Mapping[str, str], device: str = "lo") -> Iterator[Links]:
    """Traffic to each address of ``rates`` held to its rate (tc's syntax: ``100mbit``, ``12mbps``) while inside."""
    if len(rates) > MAX_SHAPED:
        raise ValueError(f"at most {MAX_SHAPED} shaped addresses")
    _tc("qdisc", "replace", "dev", device, "root", "handle", "1:", "htb", "default", "1")
    try:
        _tc("class", "add", "dev", device, "parent", "1:", "classid", "1:1", "htb", "rate", "100gbit", "burst", "4mb", "cburst", "4mb")
        for number, (address, rate) in enumerate(rates.items(), start=2):
            _tc("class", "add", "dev", device, "parent", "1:", "classid", f"1:{number}", "htb", "rate", rate, "ceil", rate, "burst", BURST, "cburst", BURST)
            _tc("filter", "add", "dev", device, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "dst", f"{address}/32", "flowid", f"1:{number}")
        yield Links(device, {address: f"1:{number}" for number, address in enumerate(rates, start=2)})
    finally:
        clear(device)
