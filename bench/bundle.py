"""Benchmark: bundles against ``docker save -o`` + ``docker load -i`` by hand, same run.

    .venv/bin/python bench/bundle.py [--runs 3] [--size-mb 500]

For a 500 MB image of random data and one of compressible text (5 layers
each), the median of ``--runs`` runs of:

- ``hand``: ``docker save -o F IMG`` on the source engine, then ``docker load -i F`` on the target;
- ``shipper``: ``shipper bundle create IMG --from a -o F.tar`` then ``shipper bundle load F.tar --to b``
  (create verifies as it writes, load verifies the whole file before loading);
- ``shipper zstd``: the same with ``-o F.tar.zst``.

Reports seconds for create and load, the ratio of the totals, and file sizes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from move import timed  # noqa: E402

from shipper.lab import Lab, Layer, SyntheticImage  # noqa: E402

BENCH_ROOT = Path("/tmp/shipper-bench-bundle")
BENCH_NET = "127.0.6"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=500)
    args = parser.parse_args()
    lab = Lab(BENCH_ROOT, BENCH_NET, ("a", "b"))
    lab.down(purge=True)
    lab.up(registry=False)
    work = BENCH_ROOT / "files"
    work.mkdir()
    layer = (args.size_mb << 20) // 5
    images = [
        ("random data", SyntheticImage("bench/bundle-random:1", tuple(Layer(layer, f"bb-random-{i}") for i in range(5)))),
        ("compressible text", SyntheticImage("bench/bundle-text:1", tuple(Layer(layer, f"bb-text-{i}", "text") for i in range(5)))),
    ]
    a, b = f"unix://{lab.engine('a').socket}", f"unix://{lab.engine('b').socket}"
    shipper = [sys.executable, "-m", "shipper"]
    inventory = str(lab.local_inventory_path)
    print(f"{args.size_mb} MB images, 5 layers, median of {args.runs} runs, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores\n")
    try:
        for title, image in images:
            lab.load_images("a", [image])
            rows: dict[str, tuple[list[float], list[float], int]] = {}
            for _ in range(args.runs):
                for way, name in (("docker save -o / docker load -i", "hand.tar"), ("shipper bundle", "site.tar"), ("shipper bundle, zstd", "site.tar.zst")):
                    for leftover in work.glob("*"):
                        leftover.unlink()
                    lab.docker("b", "image", "rm", "-f", image.name, check=False)
                    path = work / name
                    if way.startswith("docker"):
                        made = timed(["docker", "-H", a, "save", "-o", str(path), image.name])[0]
                        loaded = timed(["docker", "-H", b, "load", "-q", "-i", str(path)])[0]
                    else:
                        made = timed([*shipper, "bundle", "create", image.name, "--from", "a", "-o", str(path), "-i", inventory])[0]
                        loaded = timed([*shipper, "bundle", "load", str(path), "--to", "b", "-i", inventory])[0]
                    creates, loads, _ = rows.setdefault(way, ([], [], 0))
                    creates.append(made)
                    loads.append(loaded)
                    rows[way] = (creates, loads, path.stat().st_size)
            hand = sum(statistics.median(x) for x in rows["docker save -o / docker load -i"][:2])
            print(f"**{args.size_mb} MB, {title}**\n")
            print("| way | create s | load s | total vs hand | file MB |\n|---|---|---|---|---|")
            for way, (creates, loads, size) in rows.items():
                total = statistics.median(creates) + statistics.median(loads)
                print(f"| {way} | {statistics.median(creates):.2f} | {statistics.median(loads):.2f} | {total / hand:.2f} | {size / 1e6:.0f} |")
            print()
            lab.docker("a", "image", "rm", "-f", image.name, check=False)
            subprocess.run(["sync"])
    finally:
        lab.down(purge=True)


if __name__ == "__main__":
    main()
