"""Benchmark: ``shipper move --via registry`` against docker push + docker pull by hand, same run.

    .venv/bin/python bench/registry.py [--runs 3] [--size-mb 200]

Each run moves a fresh image (new random layers, so neither way finds
anything already in the registry or on the target) from a to b through the
lab's registry (TLS + htpasswd):

- ``shipper``: ``shipper move IMG --from a --to b --via registry --registry main``
  (plan, upload from a's layer store, pull on b by digest, checks, tag, clean-up);
- ``shipper --no-store-read``: the same with a's engine pushing (``docker push``'s way);
- ``hand``: over ssh, ``docker tag`` + ``docker push`` on a, ``docker pull`` +
  ``docker tag`` on b (both engines logged in beforehand, not timed).

Reports the median seconds, the ratio (below 1: shipper is faster),
shipper's peak memory, and the first hop alone: shipper's upload from the
store (as its result reports it) against ``docker push`` by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from move import timed  # noqa: E402

from shipper.lab import Lab, Layer, SyntheticImage  # noqa: E402

BENCH_ROOT = Path("/tmp/shipper-bench-reg")
BENCH_NET = "127.0.7"


def inventory(lab: Lab) -> Path:
    import yaml

    user, password = lab.registry_credentials()
    (lab.root / "registry-password").write_text(password)
    data = yaml.safe_load(lab.inventory_path.read_text())
    data["registries"] = {
        "main": {"address": lab.registry.host_port, "ca": str(lab.tls_file("ca.crt")), "username": user, "password_file": str(lab.root / "registry-password")}
    }
    path = lab.root / "bench-inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def ssh(lab: Lab, host: str, command: str) -> str:
    docker_config = lab.root / f"docker-config-{host}"
    return f"ssh -F {shlex.quote(str(lab.ssh_config))} {host} {shlex.quote(f'DOCKER_CONFIG={docker_config} {command}')}"


def log_in(lab: Lab) -> None:
    user, _ = lab.registry_credentials()
    for host in ("a", "b"):
        timed(f"{ssh(lab, host, f'docker login -u {user} --password-stdin {lab.registry.host_port}')} < {lab.root / 'registry-password'}", shell=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=200)
    args = parser.parse_args()
    lab = Lab(BENCH_ROOT, BENCH_NET, ("a", "b"))
    lab.down(purge=True)
    lab.up()
    try:
        path = inventory(lab)
        log_in(lab)
        registry = lab.registry.host_port
        ways = ("shipper", "shipper-push", "hand")
        times: dict[str, list[float]] = {way: [] for way in ways}
        first_hop: dict[str, list[float]] = {"shipper": [], "hand": []}
        peaks: list[float] = []
        for run in range(args.runs):
            for way in ways:
                image = SyntheticImage(f"bench/reg-{way}-{run}:1", tuple(Layer((args.size_mb << 20) // 4, f"reg-{way}-{run}-{i}") for i in range(4)))
                lab.load_images("a", [image])
                if way.startswith("shipper"):
                    argv = [sys.executable, "-m", "shipper", "move", image.name, "--from", "a", "--to", "b", "--via", "registry", "--registry", "main", "--json", "-i", str(path)]
                    seconds, peak, out = timed(argv + (["--no-store-read"] if way == "shipper-push" else []))
                    results = [json.loads(line) for line in out.splitlines() if '"result"' in line]
                    assert all(r["status"] == "moved" for r in results), results
                    upload = re.search(r"uncompressed, in ([0-9.]+) s", results[0].get("note", ""))
                    if way == "shipper":
                        assert upload is not None, results  # the layer store was read, not docker push
                        first_hop["shipper"].append(float(upload.group(1)))
                        peaks.append(peak)
                else:
                    remote = f"{registry}/{image.name}"
                    push = " && ".join([ssh(lab, "a", f"docker tag {image.name} {remote}"), ssh(lab, "a", f"docker push -q {remote}")])
                    pull = " && ".join([ssh(lab, "b", f"docker pull -q {remote}"), ssh(lab, "b", f"docker tag {remote} {image.name}")])
                    pushed = timed(f"set -e; {push} >/dev/null", shell=True)[0]
                    seconds = pushed + timed(f"set -e; {pull} >/dev/null", shell=True)[0]
                    first_hop["hand"].append(pushed)
                times[way].append(seconds)
                for host in ("a", "b"):
                    lab.docker(host, "image", "rm", "-f", image.name, f"{registry}/{image.name}", check=False)
        median = {way: statistics.median(times[way]) for way in ways}
        hand = median["hand"]
        print(f"{args.size_mb} MB image (4 random layers), fresh each run, median of {args.runs} runs, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores\n")
        print("| way | median s | vs hand | first hop s (a to the registry) | peak MB |\n|---|---|---|---|---|")
        print(f"| shipper move --via registry (uploads from a's layer store) | {median['shipper']:.2f} | **{median['shipper'] / hand:.2f}** | {statistics.median(first_hop['shipper']):.2f} | {max(peaks):.0f} |")
        print(f"| shipper move --via registry --no-store-read (a's engine pushes) | {median['shipper-push']:.2f} | {median['shipper-push'] / hand:.2f} | - | - |")
        print(f"| docker tag+push on a, pull+tag on b (ssh) | {hand:.2f} | 1.00 | {statistics.median(first_hop['hand']):.2f} | - |")
    finally:
        lab.down(purge=True)


if __name__ == "__main__":
    main()
