"""Benchmark: moves over a shaped link, shipper against the hand-made pipe, in the same run.

    .venv/bin/python bench/link.py [--rate 100mbit] [--size-mb 500] [--runs 1] [--limit 5M]

A lab of its own (hosts a and b on loopback); traffic to b is held to
``--rate`` with ``tc`` htb (shipper/lab/shaping.py; this kernel has no netem,
so there is no added latency). For a compressible image (text layers) and a
random one: ``shipper move`` host to host with ``--compress auto`` (the
default) and ``none``, against ``ssh a docker save | ssh b docker load``;
seconds, the ratio to the hand pipe, and the bytes that crossed the link.
Then ``--limit-rate`` on an unshaped link: the time a limited move takes
against size / rate.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shipper.lab import Lab, Layer, SyntheticImage  # noqa: E402
from shipper.lab.shaping import shaped  # noqa: E402

BENCH_ROOT = Path("/tmp/shipper-bench-link")
BENCH_NET = "127.0.7"


def move(lab: Lab, image: str, *extra: str) -> tuple[float, int, int]:
    """(seconds, stream bytes, bytes on the wire) of one shipper move a -> b."""
    argv = [sys.executable, "-m", "shipper", "move", image, "--from", "a", "--to", "b", "--json", "-i", str(lab.inventory_path), *extra]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed: {argv}\n{done.stderr}")
    (result,) = [json.loads(line) for line in done.stdout.splitlines() if '"event": "result"' in line]
    return seconds, result["bytes_sent"], result.get("bytes_on_wire") or result["bytes_sent"]


def hand_pipe(lab: Lab, image: str) -> float:
    ssh = f"ssh -F {shlex.quote(str(lab.ssh_config))}"
    command = f"{ssh} a docker save {shlex.quote(image)} | {ssh} b docker load -q"
    started = time.perf_counter()
    subprocess.run(command, shell=True, check=True, capture_output=True, executable="/bin/bash")
    return time.perf_counter() - started


def clear(lab: Lab, image: str) -> None:
    lab.docker("b", "image", "rm", "-f", image, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", default="100mbit", help="the link to b, in tc's syntax")
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--limit", default="5M", help="--limit-rate for the last table (on an unshaped link)")
    args = parser.parse_args()
    lab = Lab(BENCH_ROOT, BENCH_NET, ("a", "b"))
    lab.down(purge=True)
    lab.up(registry=False)
    layer = (args.size_mb << 20) // 5
    images = {
        "compressible text": SyntheticImage("bench/link-text:1", tuple(Layer(layer, f"link-text-{i}", "text") for i in range(5))),
        "random data": SyntheticImage("bench/link-random:1", tuple(Layer(layer, f"link-random-{i}") for i in range(5))),
    }
    lines = [
        f"{args.size_mb} MB images, link to b shaped to {args.rate} (tc htb on loopback, no added latency), median of {args.runs}, {time.strftime('%Y-%m-%d')}",
        "",
        "| image | way | median s | vs hand pipe | MB on the link |",
        "|---|---|---|---|---|",
    ]
    try:
        lab.load_images("a", list(images.values()))
        with shaped({lab.address("b"): args.rate}):
            for title, image in images.items():
                hand: list[float] = []
                ways: dict[str, list[tuple[float, int, int]]] = {"shipper (auto)": [], "shipper --compress none": []}
                for _ in range(args.runs):
                    clear(lab, image.name)
                    hand.append(hand_pipe(lab, image.name))
                    for way, extra in (("shipper (auto)", ()), ("shipper --compress none", ("--compress", "none"))):
                        clear(lab, image.name)
                        ways[way].append(move(lab, image.name, *extra))
                base = statistics.median(hand)
                for way, runs in ways.items():
                    seconds = statistics.median(r[0] for r in runs)
                    lines.append(f"| {title} | {way} | {seconds:.1f} | **{seconds / base:.2f}** | {runs[-1][2] / 1e6:.0f} |")
                lines.append(f"| {title} | `ssh a docker save \\| ssh b docker load` | {base:.1f} | 1.00 | {runs[-1][1] / 1e6:.0f} |")
        limited = SyntheticImage("bench/link-limited:1", (Layer(100 << 20, "link-limited"),))
        lab.load_images("a", [limited])
        clear(lab, limited.name)
        seconds, sent, _ = move(lab, limited.name, "--limit-rate", args.limit)
        rate = float(args.limit[:-1]) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[args.limit[-1].upper()]
        lines += ["", f"`--limit-rate {args.limit}` for {sent / 1e6:.0f} MB (unshaped link): {seconds:.1f} s against {sent / rate:.1f} s at the rate ({(seconds / (sent / rate) - 1) * 100:+.1f}%, start-up included)"]
        print("\n".join(lines))
    finally:
        lab.down(purge=True)


if __name__ == "__main__":
    main()
