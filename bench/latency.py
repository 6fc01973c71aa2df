"""Benchmark: shipper over far links (round trips of 0 to 200 ms), where the kernel has no netem.

    .venv/bin/python bench/latency.py [--hosts 10] [--rtt 0,100,200] [--runs 3]

A lab of a source and N targets on this machine, every host's sshd reached
through a relay that holds each byte half the round trip each way
(shipper/lab/delay.py): shipper's own sessions and the source's SSH to its
targets (host to host) cross it, as they would cross a WAN. A small image is
on every host, and a second one on the source only. Timed as a user meets
them (a process each, start-up included), with ``--forks`` at its default:

- ``shipper ping all``;
- ``shipper move IMG --from src --to targets`` where every target has it:
  each is ``unchanged`` (#19: "at most 3 sequential round trips per host after
  connecting, so that at 100 ms it stays under 3 s"); the ``round_trips`` the
  results report;
- ``shipper move NEW --from src --to t01``: a 4 MiB image one target lacks.

Printed: median wall seconds at each round trip, and the round trips they cost
in all: (wall at R - wall at 0) / R, the sequential waits a user pays for a
far link (connecting included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shipper.lab import Lab, Layer, SyntheticImage  # noqa: E402
from shipper.lab.delay import far_inventory, relays_for  # noqa: E402

BENCH_ROOT = Path("/tmp/shipper-bench-far")
BENCH_NET = "127.0.11"
EVERYWHERE = SyntheticImage("bench/far-small:1", (Layer(1 << 20, "far-small"),))
NEW = SyntheticImage("bench/far-new:1", (Layer(4 << 20, "far-new"),))


def run(argv: list[str]) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "shipper", *argv], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: shipper {' '.join(argv)}\n{done.stderr[-2000:]}")
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return wall, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10, help="targets (and a source)")
    parser.add_argument("--rtt", default="0,100,200", help="round trips to try, in ms")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rtts = [int(r) for r in args.rtt.split(",")]
    targets = tuple(f"t{i:02d}" for i in range(1, args.hosts + 1))
    lab = Lab(BENCH_ROOT, BENCH_NET, ("src", *targets))
    lab.down(purge=True)
    lab.up(registry=False)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "shipper")], check=True)
    try:
        for name in lab.names:
            lab.load_images(name, [EVERYWHERE])
        lab.load_images("src", [NEW])
        inventory = str(far_inventory(lab))
        group = ",".join(targets)
        commands = {
            "ping all": ["ping", "all", "-i", inventory, "--json"],
            f"move (unchanged on {args.hosts} targets)": ["move", EVERYWHERE.name, "--from", "src", "--to", group, "-i", inventory, "--json"],
            "move (4 MiB to one target)": ["move", NEW.name, "--from", "src", "--to", targets[0], "-i", inventory, "--json"],
        }
        walls: dict[str, dict[int, float]] = {label: {} for label in commands}
        trips: list[int] = []
        for rtt in rtts:
            relays = relays_for(lab, rtt / 1000)
            try:
                for label, argv in commands.items():
                    seconds = []
                    for _ in range(args.runs):
                        if "4 MiB" in label:
                            lab.docker(targets[0], "image", "rm", "-f", NEW.name, check=False)
                        wall, events = run(argv)
                        seconds.append(wall)
                        if "unchanged" in label and rtt == rtts[-1]:
                            trips += [e["round_trips"] for e in events if e.get("event") == "result" and "round_trips" in e]
                    walls[label][rtt] = statistics.median(seconds)
                    print(f"{label} at {rtt} ms: {' '.join(f'{s:.2f}' for s in seconds)} s", file=sys.stderr, flush=True)
            finally:
                for relay in relays:
                    relay.stop()
        print(f"\n{args.hosts} targets and a source on this machine, each sshd behind a relay holding bytes half the round trip each way; "
              f"median of {args.runs}, {time.strftime('%Y-%m-%d %H:%M')}\n")  # fmt: skip
        print("| command | " + " | ".join(f"{r} ms s" for r in rtts) + " | round trips paid |")
        print("|---|" + "---|" * (len(rtts) + 1))
        for label, by_rtt in walls.items():
            far = [r for r in rtts if r > 0]
            paid = statistics.median((by_rtt[r] - by_rtt[rtts[0]]) / (r / 1000) for r in far) if far and rtts[0] == 0 else float("nan")
            print(f"| `shipper {label}` | " + " | ".join(f"{by_rtt[r]:.2f}" for r in rtts) + f" | {paid:.1f} |")
        if trips:
            print(f"\nround_trips reported per unchanged target (engine requests after connecting): max {max(trips)}, from {len(trips)} results")
    finally:
        lab.down(purge=True)


if __name__ == "__main__":
    main()
