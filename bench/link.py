"""Benchmark: moves over a shaped link, shipper against the hand-made pipe, in the same run.

    .venv/bin/python bench/link.py [--rate 100mbit] [--size-mb 500] [--runs 1] [--limit 5M]

A namespaced lab of its own (shipper/lab/netns.py): hosts a and b each in a
network namespace on a link of its own, both held to ``--rate`` both ways with
``tc`` htb, this machine reaching them over those links (this kernel has no
netem, so there is no added latency). For a compressible image (text layers)
and a random one: ``shipper move`` host to host with ``--compress auto`` (the
default) and ``none``, against ``ssh a docker save | ssh b docker load``;
seconds, the ratio to the hand pipe, and the bytes that crossed b's link (the
kernel's counter). A resume table: b's link taken down (``ip link set down``)
once ``--cut-at`` of a move has crossed it, the move failing when b has been
silent for the ssh_config's ServerAliveInterval x ServerAliveCountMax (2 s x 3
here), the link brought back, then the same command again (the layers that
arrived whole are not sent again). Then ``--limit-rate`` on an unshaped link:
the time a limited move takes against size / rate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shipper.lab import Lab, Layer, SyntheticImage  # noqa: E402

BENCH_ROOT = Path("/tmp/shipper-bench-link")
BENCH_NET = "198.18.7"
IMPATIENT = "\nHost *\n  ServerAliveInterval 2\n  ServerAliveCountMax 3\n"  # a dropped link is given up on after 6 s


def received(lab: Lab, host: str = "b") -> int:
    """Bytes ``host``'s link has carried to it (the kernel's counter)."""
    assert lab.network is not None
    return lab.network.counters(host).received


@contextlib.contextmanager
def shaped(lab: Lab, rate: str) -> Iterator[None]:
    """a's and b's links held to ``rate`` both ways while inside."""
    assert lab.network is not None
    for host in ("a", "b"):
        lab.network.shape(host, rate)
    try:
        yield
    finally:
        for host in ("a", "b"):
            lab.network.shape(host, None)


def impatient_inventory(lab: Lab) -> Path:
    """The lab's inventory with an ssh_config that gives up on a host silent for 6 s."""
    config = lab.root / "impatient_ssh_config"
    config.write_text(lab.ssh_config.read_text() + IMPATIENT)
    inventory = lab.root / "impatient.yml"
    inventory.write_text(lab.inventory_path.read_text().replace(str(lab.ssh_config), str(config)))
    return inventory


def move(lab: Lab, image: str, *extra: str, inventory: Path | None = None) -> tuple[float, int, int]:
    """(seconds, stream bytes, bytes b's link received: the kernel's count) of one shipper move a -> b."""
    argv = [sys.executable, "-m", "shipper", "move", image, "--from", "a", "--to", "b", "--json", "-i", str(inventory or lab.inventory_path), *extra]
    before = received(lab)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed: {argv}\n{done.stderr}")
    (result,) = [json.loads(line) for line in done.stdout.splitlines() if '"event": "result"' in line]
    return seconds, result["bytes_sent"], received(lab) - before


def limited_move(lab: Lab, image: str, limit: str) -> tuple[float, int, tuple[int, float], tuple[float, float]]:
    """(seconds, bytes sent, (bytes, seconds) of the steady middle: progress from 10% to 90%, (seconds to the first
    byte, seconds from the last byte to the end): the fixed costs) of a rate-limited move."""
    argv = [sys.executable, "-m", "shipper", "move", image, "--from", "a", "--to", "b", "--json", "-i", str(lab.inventory_path), "--limit-rate", limit]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen: list[tuple[float, int]] = []
    sent = 0
    for line in proc.stdout:  # type: ignore[union-attr]
        event = json.loads(line)
        if event["event"] == "progress":
            seen.append((time.perf_counter(), event["bytes"]))
        elif event["event"] == "result":
            sent = event["bytes_sent"]
    proc.wait()
    seconds = time.perf_counter() - started
    # The steady part: from the first event past 10% of the bytes to the last one before 90% (the first
    # events include the start, the last ones the target's load of what arrived).
    total = seen[-1][1]
    middle = [(t, b) for t, b in seen if 0.1 * total <= b <= 0.9 * total] or seen
    (t0, b0), (t1, b1) = middle[0], middle[-1]
    first = next((t for t, b in seen if b > 0), started) - started
    last = next((t for t, b in seen if b >= total), seen[-1][0]) - started
    return seconds, sent, (b1 - b0, t1 - t0), (first, seconds - last)


def hand_pipe(lab: Lab, image: str) -> tuple[float, int]:
    """(seconds, bytes b's link received) of ``ssh a docker save | ssh b docker load``."""
    ssh = f"ssh -F {shlex.quote(str(lab.ssh_config))}"
    command = f"{ssh} a docker save {shlex.quote(image)} | {ssh} b docker load -q"
    before = received(lab)
    started = time.perf_counter()
    subprocess.run(command, shell=True, check=True, capture_output=True, executable="/bin/bash")
    return time.perf_counter() - started, received(lab) - before


def clear(lab: Lab, image: str) -> None:
    lab.docker("b", "image", "rm", "-f", image, check=False)


def receiver_pid(lab: Lab, host: str) -> int | None:
    """The resumable receiver taking a stream on ``host`` (archive/receiver.py), if one runs."""
    socket = f"unix://{lab.engine(host).socket}"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"DOCKER_HOST={socket}".encode() in env and b"python" in argv[0] and any(b"io.shipper.carrier" in a for a in argv[1:3]):
            return int(entry.name)
    return None


def cut_and_rerun(lab: Lab, image: SyntheticImage, at: float) -> list[str]:
    """One uncut move; then a move whose link to b goes down once ``at`` of the image has crossed it (the kernel's
    counter), the link back once the move has failed, and its rerun."""
    assert lab.network is not None
    size = sum(layer.size for layer in image.layers)
    inventory = impatient_inventory(lab)
    clear(lab, image.name)
    uncut, _, _ = move(lab, image.name, inventory=inventory)
    clear(lab, image.name)
    argv = [sys.executable, "-m", "shipper", "move", image.name, "--from", "a", "--to", "b", "--json", "-i", str(inventory)]
    started = time.perf_counter()
    before = received(lab)
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while first.poll() is None and received(lab) - before < size * at:
        time.sleep(0.02)
    lab.network.cut("b")
    try:
        first.wait()
    finally:
        lab.network.restore("b")
    cut_seconds = time.perf_counter() - started
    while receiver_pid(lab, "b") is not None:  # cut off, it ends once the link is back
        time.sleep(0.1)
    rerun_from = received(lab)
    rerun, _, _ = move(lab, image.name, inventory=inventory)
    sent = received(lab) - rerun_from
    return [
        f"| uncut move | {uncut:.1f} | 1.00 | {size / 1e6:.0f} |",
        f"| move cut at {at:.0%} (b's link down; failed 6 s later) | {cut_seconds:.1f} | - | - |",
        f"| its rerun (link back) | {rerun:.1f} | - | **{sent / 1e6:.0f} ({sent / size:.0%} of the image)** |",
        f"| cut move + rerun | {cut_seconds + rerun:.1f} | **{(cut_seconds + rerun) / uncut:.2f}** | - |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", default="100mbit", help="the link to b, in tc's syntax")
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--limit", default="5M", help="--limit-rate for the last table (on an unshaped link)")
    parser.add_argument("--cut-at", type=float, default=0.7, help="the share of the image after which the link drops (the resume table)")
    parser.add_argument("--only-cut", action="store_true", help="only the resume table")
    parser.add_argument("--only-limit", action="store_true", help="only the --limit-rate line")
    args = parser.parse_args()
    lab = Lab(BENCH_ROOT, BENCH_NET, ("a", "b"), links={"a": None, "b": None})
    lab.down(purge=True)
    lab.up(registry=False)
    layer = (args.size_mb << 20) // 5
    images = {
        "compressible text": SyntheticImage("bench/link-text:1", tuple(Layer(layer, f"link-text-{i}", "text") for i in range(5))),
        "random data": SyntheticImage("bench/link-random:1", tuple(Layer(layer, f"link-random-{i}") for i in range(5))),
    }
    lines = [
        f"{args.size_mb} MB images, a's and b's links held to {args.rate} both ways (namespaced lab, tc htb, no added latency), median of {args.runs}, {time.strftime('%Y-%m-%d')}",
        "",
        "| image | way | median s | vs hand pipe | MB on the link |",
        "|---|---|---|---|---|",
    ]
    cut = SyntheticImage("bench/link-cut:1", tuple(Layer((args.size_mb << 20) // 10, f"link-cut-{i}") for i in range(10)))
    try:
        lab.load_images("a", [] if args.only_limit else [cut] if args.only_cut else [*images.values(), cut])
        with shaped(lab, args.rate) if not args.only_limit else contextlib.nullcontext():
            resumed = cut_and_rerun(lab, cut, args.cut_at) if not args.only_limit else []
            for title, image in images.items() if not (args.only_cut or args.only_limit) else ():
                hand: list[tuple[float, int]] = []
                ways: dict[str, list[tuple[float, int, int]]] = {"shipper (auto)": [], "shipper --compress none": []}
                for _ in range(args.runs):
                    clear(lab, image.name)
                    hand.append(hand_pipe(lab, image.name))
                    for way, extra in (("shipper (auto)", ()), ("shipper --compress none", ("--compress", "none"))):
                        clear(lab, image.name)
                        ways[way].append(move(lab, image.name, *extra))
                base = statistics.median(h[0] for h in hand)
                for way, runs in ways.items():
                    seconds = statistics.median(r[0] for r in runs)
                    lines.append(f"| {title} | {way} | {seconds:.1f} | **{seconds / base:.2f}** | {runs[-1][2] / 1e6:.0f} |")
                lines.append(f"| {title} | `ssh a docker save \\| ssh b docker load` | {base:.1f} | 1.00 | {hand[-1][1] / 1e6:.0f} |")
        lines += [] if args.only_limit else ["", f"A link cut: {args.size_mb} MB of random data in 10 layers over the same link, b's link taken down once {args.cut_at:.0%} of the image had reached b, brought back when the move had failed; then the same command again:", "",
                  "| move | s | vs uncut | MB sent |", "|---|---|---|---|", *resumed]  # fmt: skip
        if args.only_cut:
            print("\n".join(lines[:1] + lines[4:]))
            return
        limited = SyntheticImage("bench/link-limited:1", (Layer(100 << 20, "link-limited"),))
        lab.load_images("a", [limited])
        clear(lab, limited.name)
        seconds, sent, flowing, (first, tail) = limited_move(lab, limited.name, args.limit)
        rate = float(args.limit[:-1]) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[args.limit[-1].upper()]
        lines += ["", f"`--limit-rate {args.limit}` for {sent / 1e6:.0f} MB (unshaped link): {seconds:.1f} s against {sent / rate:.1f} s at the rate "
                  f"({(seconds / (sent / rate) - 1) * 100:+.1f}%, start-up and the target's load included); while bytes flowed, "
                  f"{flowing[0] / flowing[1] / rate * 100:.1f}% of the rate ({flowing[0] / 1e6:.0f} MB in {flowing[1]:.1f} s, progress from 10% to 90%); "
                  f"the first byte {first:.2f} s after the command started, its end {tail:.2f} s after the last byte"]  # fmt: skip
        print("\n".join(lines))
    finally:
        lab.down(purge=True)


if __name__ == "__main__":
    main()
