"""Lab hosts on links of their own: a network namespace per host, joined by veth pairs to one bridge.

On loopback every connection leaves from 127.0.0.1 and ``tc`` can only tell
traffic apart by where it goes (shaping.py). Here each host (its dockerd, its
sshd, any registry on it) runs in its own network namespace with one
interface, ``eth0``, the far end of a veth pair whose near end is a port of a
bridge in this machine's namespace; the bridge holds ``<net>.1``, so the
control machine reaches every host over that host's link, as hosts reach each
other. A host's link is shaped both ways with an ``htb`` qdisc on each end of
its veth (its uplink: what it sends, on ``eth0`` in its namespace; its
downlink: what it receives, on the bridge's port), and counted there: the
bridge port's own counters are the bytes the host sent and received, whoever
the other end was. The kernel here has no ``netem``: no delay or loss.

Addresses come from 198.18.0.0/15, the range set aside for benchmarking
networks (RFC 2544), so they never meet a real network of the machine.

    network = Network("198.18.3", {"a": "100mbit", "b": "100mbit"})
    network.create()                       # idempotent
    run_in = network.enter("a")            # ["nsenter", "--net=/run/netns/...", "--"]
    network.counters("a")                  # Counters(sent=..., received=...)
    network.cut("b"); network.restore("b") # the link goes down and comes back
    network.destroy()
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipper.lab.procs import LabError

BURST = "256k"  # above the 64 KiB segments a veth's offloads pass along
NETNS_DIR = Path("/run/netns")
RANGE = ipaddress.ip_network("198.18.0.0/15")


@dataclass(frozen=True)
class Counters:
    """Bytes a host's link carried, from the kernel's counters of the bridge's port (Ethernet frames, headers included)."""

    sent: int  # by the host
    received: int  # by the host


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {done.stderr.strip()}", hint="the namespaced lab needs root, iproute2 and the veth and bridge modules")
    return done


def in_namespace_range(net: str) -> bool:
    """Whether ``net`` (three octets) lies where namespaced labs live."""
    try:
        return ipaddress.ip_network(f"{net}.0/24").subnet_of(RANGE)  # type: ignore[arg-type]
    except ValueError:
        return False


class Network:
    """The bridge ``<net>.1/24`` and one namespaced host per entry of ``hosts`` (name -> address's last octet)."""

    def __init__(self, net: str, hosts: Mapping[str, int], rates: Mapping[str, str | None]) -> None:
        """``rates``: each host's link rate in tc's syntax (``100mbit``), both ways; a host missing or None is not shaped."""
        if not in_namespace_range(net):
            raise LabError(f"a namespaced lab's net must be three octets within {RANGE} (benchmarking addresses), not {net!r}",
                           hint="for example --net 198.18.3")
        self.net = net
        second, third = (int(part) for part in net.split(".")[1:3])
        self.tag = f"{second - 18}{third:03d}"  # 4 characters: interface names are limited to 15
        self.hosts = dict(hosts)
        self.rates = {name: rates.get(name) for name in self.hosts}

    # -- names -----------------------------------------------------------------

    @property
    def bridge(self) -> str:
        return f"shb{self.tag}"

    def address(self, name: str) -> str:
        return f"{self.net}.{self.hosts[name]}"

    def namespace(self, name: str) -> str:
        return f"shipper-{self.tag}-{name}"

    def port(self, name: str) -> str:
        """The bridge's end of the host's veth (in this machine's namespace)."""
        return f"shv{self.tag}-{self.hosts[name]}"

    def enter(self, name: str) -> list[str]:
        """The argv prefix that runs a program in the host's network namespace (and only that: files are shared)."""
        return ["nsenter", f"--net={NETNS_DIR / self.namespace(name)}", "--"]

    # -- up and down -------------------------------------------------------------

    def create(self) -> None:
        """The bridge and every host's namespace, link and shaping; what exists already is left as it is."""
        if not Path(f"/sys/class/net/{self.bridge}").exists():
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.net}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for name in self.hosts:
            self._create_host(name)

    def _create_host(self, name: str) -> None:
        namespace, port = self.namespace(name), self.port(name)
        if not (NETNS_DIR / namespace).exists():
            _run("ip", "netns", "add", namespace)
        if not Path(f"/sys/class/net/{port}").exists():
            inside = f"shi{self.tag}-{self.hosts[name]}"
            _run("ip", "link", "add", port, "type", "veth", "peer", "name", inside)
            _run("ip", "link", "set", inside, "netns", namespace)
            _run("ip", "-n", namespace, "link", "set", inside, "name", "eth0")
            _run("ip", "-n", namespace, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
            _run("ip", "link", "set", port, "master", self.bridge)
        _run("ip", "link", "set", port, "up")
        _run("ip", "-n", namespace, "link", "set", "eth0", "up")
        _run("ip", "-n", namespace, "link", "set", "lo", "up")
        self.shape(name, self.rates[name])

    def shape(self, name: str, rate: str | None) -> None:
        """Hold the host's link to ``rate`` both ways (None: unshaped)."""
        self.rates[name] = rate
        for device, netns in ((self.port(name), None), ("eth0", self.namespace(name))):
            where = ["-n", netns] if netns else []
            _run("tc", *where, "qdisc", "del", "dev", device, "root", check=False)
            if rate:
                _run("tc", *where, "qdisc", "add", "dev", device, "root", "handle", "1:", "htb", "default", "1", "r2q", "1000")
                _run("tc", *where, "class", "add", "dev", device, "parent", "1:", "classid", "1:1", "htb",
                     "rate", rate, "ceil", rate, "burst", BURST, "cburst", BURST)  # fmt: skip

    def destroy(self) -> None:
        """Every namespace and link of this network, and the bridge (processes in the namespaces must be gone)."""
        for name in self.hosts:
            _run("ip", "link", "del", self.port(name), check=False)  # takes its peer with it
            _run("ip", "netns", "del", self.namespace(name), check=False)
        _run("ip", "link", "del", self.bridge, check=False)

    # -- during a run ----------------------------------------------------------------

    def counters(self, name: str) -> Counters:
        stats = Path(f"/sys/class/net/{self.port(name)}/statistics")
        # The bridge's port sees the host's frames from the other side: what it receives, the host sent.
        return Counters(sent=int((stats / "rx_bytes").read_text()), received=int((stats / "tx_bytes").read_text()))

    def cut(self, name: str) -> None:
        """The host's link goes down: nothing crosses it either way until ``restore``."""
        _run("ip", "link", "set", self.port(name), "down")

    def restore(self, name: str) -> None:
        _run("ip", "link", "set", self.port(name), "up")

