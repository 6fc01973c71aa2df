"""Benchmark: ``bundle verify`` of a synthetic bundle, with and without its checksum file.

    .venv/bin/python bench/verify.py [--size-mb 500] [--runs 3]

Every layer is hashed against its image's config either way (the checksum file
vouches for nothing: whoever changes a bundle can rewrite it); with the file,
its sha256 is computed too, on a thread of its own. No engine needed: the
bundle is written by shipper's own writer from synthetic layers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shipper.archive.savestream import SaveStreamFilter  # noqa: E402
from shipper.bundle import BundleImage, BundleWriter, read_verified  # noqa: E402
from shipper.bundle.format import trailer_for  # noqa: E402
from shipper.lab import Layer, SyntheticImage, image_id  # noqa: E402
from shipper.lab.images import save_stream  # noqa: E402


def write_bundle(path: Path, size_mb: int) -> None:
    image = SyntheticImage("bench/verify:1", tuple(Layer((size_mb << 20) // 5, f"bench-verify-{i}") for i in range(5)))
    images = [BundleImage(image_id(image), (image.name,), size_mb << 20, (), "linux/amd64")]
    checker = SaveStreamFilter([image_id(image)], keep_tags=True, trailer=lambda stats: trailer_for(
        [BundleImage(i.id, i.tags, i.size, tuple(stats.images[i.id]), i.platform) for i in images], "bench", [])(stats))
    writer = BundleWriter(path)
    for piece in checker.run(save_stream([image])):
        writer.write(piece)
    writer.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shipper-bench-verify-") as work:
        path = Path(work) / "bundle.tar"
        write_bundle(path, args.size_mb)
        size = path.stat().st_size
        print(f"{size / 1e6:.0f} MB bundle, median of {args.runs} runs, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores\n")
        print("| verify | median s | MB/s |\n|---|---|---|")
        for label in ("with its checksum file", "without a checksum file"):
            if label.startswith("without"):
                Path(f"{path}.sha256").unlink()
            times = []
            for _ in range(args.runs):
                started = time.monotonic()
                read_verified(path)
                times.append(time.monotonic() - started)
            median = statistics.median(times)
            print(f"| {label} | {median:.2f} | {size / 1e6 / median:.0f} |")


if __name__ == "__main__":
    main()
