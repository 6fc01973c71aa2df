"""Benchmark: ``shipper move --via registry`` against docker push + docker pull by hand, same run.

    .venv/bin/python bench/registry.py [--runs 3] [--size-mb 200]

Each run moves a fresh image (new random layers, so neither way finds
anything already in the registry or on the target) from a to b through the
lab's registry (TLS + htpasswd):

- ``shipper``: ``shipper move IMG --from a --to b --via registry --registry main``
  (plan, push from a, pull on b by digest, checks, tag, clean-up);
- ``hand``: over ssh, ``docker tag`` + ``docker push`` on a, ``docker pull`` +
  ``docker tag`` on b (both engines logged in beforehand, not timed).

Reports the median seconds, the ratio (below 1: shipper is faster) and
shipper's peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
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
        times: dict[str, list[float]] = {"shipper": [], "hand": []}
        peaks: list[float] = []
        for run in range(args.runs):
            for way in ("shipper", "hand"):
                image = SyntheticImage(f"bench/reg-{way}-{run}:1", tuple(Layer((args.size_mb << 20) // 4, f"reg-{way}-{run}-{i}") for i in range(4)))
                lab.load_images("a", [image])
                if way == "shipper":
                    argv = [sys.executable, "-m", "shipper", "move", image.name, "--from", "a", "--to", "b", "--via", "registry", "--registry", "main", "--json", "-i", str(path)]
                    seconds, peak, out = timed(argv)
                    results = [json.loads(line) for line in out.splitlines() if '"result"' in line]
                    assert all(r["status"] == "moved" for r in results), results
                    peaks.append(peak)
                else:
                    remote = f"{registry}/{image.name}"
                    script = " && ".join(
                        [ssh(lab, "a", f"docker tag {image.name} {remote}"), ssh(lab, "a", f"docker push -q {remote}"),
                         ssh(lab, "b", f"docker pull -q {remote}"), ssh(lab, "b", f"docker tag {remote} {image.name}")]
                    )  # fmt: skip
                    seconds = timed(f"set -e; {script} >/dev/null", shell=True)[0]
                times[way].append(seconds)
                for host in ("a", "b"):
                    lab.docker(host, "image", "rm", "-f", image.name, f"{registry}/{image.name}", check=False)
        shipper, hand = statistics.median(times["shipper"]), statistics.median(times["hand"])
        print(f"{args.size_mb} MB image (4 random layers), fresh each run, median of {args.runs} runs, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores\n")
        print("| way | median s | vs hand | peak MB |\n|---|---|---|---|")
        print(f"| shipper move --via registry | {shipper:.2f} | {shipper / hand:.2f} | {max(peaks):.0f} |")
        print(f"| docker tag+push on a, pull+tag on b (ssh) | {hand:.2f} | 1.00 | - |")
    finally:
        lab.down(purge=True)


if __name__ == "__main__":
    main()
