"""Benchmark: a fleet in sites on shaped links, flat SSH fan-out from one source against tiered registry moves.

    .venv/bin/python bench/fleet.py [--sites 3] [--per-site 8] [--rate 100mbit] [--size-mb 100] [--runs 1]

A namespaced lab (shipper/lab/netns.py): every host, the central registry and
each site's cache in a network namespace of its own, on a link of its own held
to ``--rate`` both ways with ``tc`` htb; the control machine reaches them over
the same links. The hosts: ``src`` (where the image is), ``cache1..K`` (one
site cache per site: ``shipper registry up cacheN --mirror-of central``) and
``sN-M`` (the targets, ``registry_mirror: cacheN`` for site N). The central
registry is the lab's token registry (distribution 2.8's proxy mode logs in to
its upstream with Bearer tokens only).

Each run moves a fresh image of random layers (``--size-mb``, 4 layers) to
every target twice, each way with an image of its own:

- flat: ``shipper move IMG --from src --to targets`` (host to host: the
  source's uplink carries one copy per target);
- tiered: ``shipper move IMG --from src --to targets --via registry
  --registry central`` (the source uploads once; each cache fills from the
  central registry; each target pulls from its site's cache).

Reported: wall seconds, and the bytes each host sent and received on its link
(the kernel's counters of its bridge port: Ethernet frames, headers included)
as multiples of the image. Then the model (bench/fleet_model.py) fed with the
link's measured goodput and each way's fixed cost from a one-target move,
checked against the measured run and extrapolated to 100, 500 and 2,000 hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleet_model import Calibration, flat_seconds, rate_bytes, table, tiered_floor, tiered_seconds  # noqa: E402
from shipper.lab import Lab, Layer, SyntheticImage, image_id, registry_image  # noqa: E402
from shipper.lab.netns import Counters  # noqa: E402

BENCH_ROOT = Path("/tmp/shipper-bench-fleet")
BENCH_NET = "198.18.20"
CACHE_PORT = 5100  # cache N listens on 5100 + N (its files are /var/lib/shipper/registry-PORT on this one machine)
CACHE_PASSWORD = "fleet-cache-Pa55"
REGISTRY_IMAGE = "shipper-lab/registry:2"
LAYERS = 4  # equal layers in each image moved


def fresh_image(label: str, size_mb: int) -> SyntheticImage:
    """Random layers no registry or engine of the lab has seen (a new seed each time)."""
    seed = f"{label}-{time.time_ns()}"
    return SyntheticImage(f"bench/fleet-{label}:1", tuple(Layer((size_mb << 20) // LAYERS, f"{seed}-{i}") for i in range(LAYERS)))


class Fleet:
    def __init__(self, sites: int, per_site: int, rate: str) -> None:
        self.sites = [[f"s{s}-{h}" for h in range(1, per_site + 1)] for s in range(1, sites + 1)]
        self.caches = [f"cache{s}" for s in range(1, sites + 1)]
        self.targets = [t for site in self.sites for t in site]
        names = ("src", *self.caches, *self.targets)
        self.lab = Lab(BENCH_ROOT, BENCH_NET, names, links={**{n: rate for n in names}, "registry-token": rate})
        self.secrets = BENCH_ROOT / "secrets"
        self.inventory = BENCH_ROOT / "fleet.yml"

    @property
    def links(self) -> list[str]:
        return ["src", "registry-token", *self.caches, *self.targets]

    def up(self) -> None:
        self.lab.down(purge=True)
        started = time.perf_counter()
        self.lab.up()
        print(f"lab of {len(self.lab.names)} hosts and the registries up in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        self.secrets.mkdir(mode=0o700, exist_ok=True)
        (self.secrets / "cache-password").write_text(CACHE_PASSWORD + "\n")
        (self.secrets / "central-password").write_text(self.lab.registry_credentials()[1])
        self._write_inventory()
        for n, cache in enumerate(self.caches, start=1):
            self.lab.load_images(cache, [registry_image(REGISTRY_IMAGE, "2")])
            self.shipper("registry", "up", cache, "--port", str(CACHE_PORT + n), "--user", "admin", "--password-file",
                         str(self.secrets / "cache-password"), "--image", REGISTRY_IMAGE, "--mirror-of", "central", "--trust", f"site{n}")  # fmt: skip

    def _write_inventory(self) -> None:
        data = yaml.safe_load(self.lab.inventory_path.read_text())
        user, _ = self.lab.registry_credentials()
        central = self.lab.token_registry
        data["registries"] = {
            "central": {"address": central.host_port, "ca": str(self.lab.tls_file("ca.crt")), "username": user,
                        "password_file": str(self.secrets / "central-password")},
            **{cache: {"address": f"{self.lab.address(cache)}:{CACHE_PORT + n}", "username": "admin",
                       "password_file": str(self.secrets / "cache-password")} for n, cache in enumerate(self.caches, start=1)},
        }  # fmt: skip
        data["all"]["children"] = {
            **{f"site{n}": {"hosts": {t: None for t in site}, "vars": {"registry_mirror": f"cache{n}"}} for n, site in enumerate(self.sites, start=1)},
            "targets": {"children": {f"site{n}": None for n in range(1, len(self.sites) + 1)}},
        }
        self.inventory.write_text(yaml.safe_dump(data, sort_keys=False))

    def shipper(self, *args: str) -> list[dict]:
        done = subprocess.run([sys.executable, "-m", "shipper", *args, "--json", "-i", str(self.inventory)], capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"failed: shipper {' '.join(args)}\n{done.stderr[-3000:]}")
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]

    def counters(self) -> dict[str, Counters]:
        assert self.lab.network is not None
        return {name: self.lab.network.counters(name) for name in self.links}

    def move(self, image: SyntheticImage, to: str, *route: str) -> tuple[float, dict[str, Counters]]:
        """Wall seconds and each link's bytes (sent, received) of one move of ``image`` from src."""
        self.lab.load_images("src", [image])
        before = self.counters()
        started = time.perf_counter()
        results = [e for e in self.shipper("move", image.name, "--from", "src", "--to", to, *route) if e.get("event") == "result"]
        seconds = time.perf_counter() - started
        after = self.counters()
        if {r["status"] for r in results} != {"moved"}:
            raise SystemExit(f"not every target moved: {results}")
        for target in self.lab_hosts(to):
            found = self.lab.docker(target, "image", "inspect", "-f", "{{.Id}}", image.name, check=False).stdout.strip()
            if found != image_id(image):
                raise SystemExit(f"{target} holds {found or 'nothing'} under {image.name}, not {image_id(image)}")
        return seconds, {n: Counters(after[n].sent - before[n].sent, after[n].received - before[n].received) for n in self.links}

    def lab_hosts(self, pattern: str) -> list[str]:
        return self.targets if pattern == "targets" else pattern.split(",")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--per-site", type=int, default=8)
    parser.add_argument("--rate", default="100mbit", help="every link's rate, both ways (tc's syntax)")
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()
    fleet = Fleet(args.sites, args.per_site, args.rate)
    fleet.up()
    size = args.size_mb << 20
    tiered_route = ("--via", "registry", "--registry", "central")
    try:
        # Calibration: one target, each way (the link's goodput and each way's fixed cost).
        one_flat, one_links = fleet.move(fresh_image("cal-flat", args.size_mb), fleet.sites[0][0])
        one_tiered, tiered_links = fleet.move(fresh_image("cal-tier", args.size_mb), fleet.sites[0][1], *tiered_route)
        overhead = one_links[fleet.sites[0][0]].received / size  # frames per image byte on a link
        calibration = Calibration(
            size=size, goodput=rate_bytes(args.rate) / overhead, flat_fixed=one_flat - size * overhead / rate_bytes(args.rate),
            tiered_fixed=0.0, reads_per_cache=1.0,
        )  # fmt: skip
        runs = []
        for _ in range(args.runs):
            flat = fleet.move(fresh_image("flat", args.size_mb), "targets")
            tiered = fleet.move(fresh_image("tiered", args.size_mb), "targets", *tiered_route)
            runs.append((flat, tiered))
        report(fleet, args, size, runs, calibration, one_tiered, tiered_links)
    finally:
        if not args.keep:
            for n in range(1, len(fleet.caches) + 1):
                subprocess.run(["rm", "-rf", f"/var/lib/shipper/registry-{CACHE_PORT + n}"], check=False)
            fleet.lab.down(purge=True)


def report(fleet: Fleet, args: argparse.Namespace, size: int, runs: list, calibration: Calibration, one_tiered: float, tiered_links: dict) -> None:
    flat_s = statistics.median(r[0][0] for r in runs)
    tiered_s = statistics.median(r[1][0] for r in runs)
    flat_links, tier_links = runs[-1][0][1], runs[-1][1][1]
    sites, per_site = len(fleet.sites), len(fleet.sites[0])
    reads = tier_links["registry-token"].sent / size / sites
    cache_one = tiered_links["registry-token"].sent / size  # the calibration's: one cache, one target
    calibration = Calibration(
        size=size, goodput=calibration.goodput, flat_fixed=calibration.flat_fixed,
        tiered_fixed=one_tiered - (2 + cache_one) * size / calibration.goodput, reads_per_cache=cache_one,
    )  # fmt: skip
    print(f"\n{len(fleet.targets)} targets in {sites} sites, every link {args.rate} both ways, a {args.size_mb} MB image of random "
          f"layers, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, median of {args.runs} run(s)\n")  # fmt: skip
    print("| way | wall s | vs flat | source sent | central sent per cache | each cache sent | each target received |")
    print("|---|---|---|---|---|---|---|")
    for label, seconds, links in (("flat SSH fan-out", flat_s, flat_links), ("tiered (central + a cache per site)", tiered_s, tier_links)):
        cache_sent = statistics.mean(links[c].sent for c in fleet.caches) / size
        received = [links[t].received / size for t in fleet.targets]
        central = links["registry-token"].sent / size / sites
        print(f"| {label} | {seconds:.1f} | {seconds / flat_s:.2f} | {links['src'].sent / size:.2f}× | {central:.2f}× | {cache_sent:.2f}× "
              f"| {min(received):.2f}–{max(received):.2f}× |")  # fmt: skip
    print(f"\nCalibration (one target): goodput {calibration.goodput / 1e6:.2f} MB/s a link; fixed cost flat {calibration.flat_fixed:.1f} s, "
          f"tiered {calibration.tiered_fixed:.1f} s; the central registry sent a cache {cache_one:.2f}× the image "
          f"({reads:.2f}× in the fleet run)")  # fmt: skip
    hosts = len(fleet.targets)
    predicted_flat, predicted_tiered = flat_seconds(calibration, hosts), tiered_seconds(calibration, hosts, per_site)
    print(f"Model at {hosts} hosts: flat {predicted_flat:.1f} s (measured {flat_s:.1f}, {100 * (predicted_flat / flat_s - 1):+.0f}%), "
          f"tiered {predicted_tiered:.1f} s (measured {tiered_s:.1f}, {100 * (predicted_tiered / tiered_s - 1):+.0f}%)")  # fmt: skip
    floor = tiered_floor(hosts, per_site, LAYERS)
    floor_s = calibration.tiered_fixed + floor * hosts * size / calibration.goodput
    print(f"Floor of any tiered schedule, however its stages overlap ({LAYERS} equal layers): {floor:.3f}× flat at zero "
          f"fixed costs; {floor_s:.1f} s with a tiered move's fixed cost ({calibration.tiered_fixed:.1f} s), "
          f"{floor_s / flat_s:.2f}× the measured flat\n")  # fmt: skip
    print(table(calibration, per_site))


if __name__ == "__main__":
    main()
