"""Benchmark: shipper move against the hand-made ways, in the same run, on the local lab.

    .venv/bin/python bench/move.py [--runs 3] [--size-mb 500] [--big-gb 0] [--only-thin]

First, an image whose base (90%: three layers) the target already holds:
shipper (host to host reading the source engine's layer store, host to host
filtering docker save, relay, direct) against the hand-made SSH pipe, with the
bytes each put on the wire against the size of the missing layers.

Then, for each image (500 MB of random data in 5 layers; the same size of
compressible text) and each way of moving it, the median of ``--runs`` runs:

- ``shipper --via ssh``    shipper move a -> b, host to host (the default)
- ``shipper --via relay``  shipper move a -> b, OpenSSH pipes through this machine
- ``shipper --via direct`` shipper move a -> b, Docker API to Docker API
- ``hand ssh pipe``        ssh a docker save IMG | ssh b docker load
- ``local limit``          docker -H A save IMG | docker -H B load (no SSH at all)
- ``docker load -i``       the target's own load of the same archive from a local file (saved beforehand)
- fan-out: shipper to b,c,d against three hand-made pipes one after another

Ratios are shipper / hand-made (below 1 is faster). Bytes are the stream's
(what crosses each SSH connection before encryption). Peak memory is
shipper's own process (``wait4`` ru_maxrss, children included). ``--big-gb``
adds one move of an image that large, to show memory stays flat.
Each run starts with the image absent from the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shipper.lab import Lab, Layer, SyntheticImage  # noqa: E402

BENCH_ROOT = Path("/tmp/shipper-bench")
BENCH_NET = "127.0.8"


@dataclass
class Measure:
    seconds: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    stream_bytes: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(argv: list[str] | str, shell: bool = False) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB of the process tree's largest member, stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE, executable="/bin/bash" if shell else None)
    out = proc.stdout.read()  # type: ignore[union-attr]
    err = proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {argv}\n{err.decode(errors='replace')}")
    return elapsed, usage.ru_maxrss / 1024, out.decode(errors="replace")


def clear(lab: Lab, hosts: str, image: str) -> None:
    for host in hosts.split(","):
        lab.docker(host, "image", "rm", "-f", image, check=False)


def shipper(lab: Lab, image: str, targets: str, via: str, *extra: str) -> tuple[float, float, int]:
    argv = [sys.executable, "-m", "shipper", "move", image, "--from", "a", "--to", targets, "--via", via, "--json", "-i", str(lab.inventory_path), *extra]
    seconds, peak, out = timed(argv)
    results = [json.loads(line) for line in out.splitlines() if '"event": "result"' in line]
    assert all(r["status"] == "moved" for r in results), results
    return seconds, peak, max(r.get("bytes_on_wire") or r["bytes_sent"] for r in results)  # what crossed the link


def ssh_cmd(lab: Lab, host: str, command: str) -> str:
    return f"ssh -F {shlex.quote(str(lab.ssh_config))} {host} {shlex.quote(command)}"


def hand_pipe(lab: Lab, image: str, target: str) -> float:
    return timed(f"set -o pipefail; {ssh_cmd(lab, 'a', f'docker save {image}')} | {ssh_cmd(lab, target, 'docker load -q')}", shell=True)[0]


def local_limit(lab: Lab, image: str, target: str) -> float:
    a, b = lab.engine("a").socket, lab.engine(target).socket
    return timed(f"set -o pipefail; docker -H unix://{a} save {image} | docker -H unix://{b} load -q", shell=True)[0]


def load_from_file(lab: Lab, image: str, target: str) -> float:
    """The target's own work: ``docker load -i`` of the same archive from a local file (saved before the clock)."""
    archive = BENCH_ROOT / "archive.tar"
    subprocess.run(f"docker -H unix://{lab.engine('a').socket} save {image} > {archive}", shell=True, check=True)
    try:
        return timed(f"docker -H unix://{lab.engine(target).socket} load -q -i {archive}", shell=True)[0]
    finally:
        archive.unlink()


def stream_size(lab: Lab, image: str) -> int:
    out = subprocess.run(f"docker -H unix://{lab.engine('a').socket} save {image} | wc -c", shell=True, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def bench_image(lab: Lab, image: SyntheticImage, runs: int) -> dict[str, Measure]:
    lab.load_images("a", [image])
    name = image.name
    ssh_ways = {
        "shipper --via ssh": (), "shipper --via ssh --no-resume": ("--no-resume",), "shipper --via ssh --compress none": ("--compress", "none"),
        "shipper --via ssh --compress zlib": ("--compress", "zlib"),
    }  # fmt: skip
    ways: dict[str, Measure] = {
        k: Measure()
        for k in (*ssh_ways, "shipper --via relay", "shipper --via direct", "hand ssh pipe", "local limit", "docker load -i (a local file)",
                  "shipper fan-out b,c,d", "hand pipes b, c, d in turn")
    }  # fmt: skip
    size = stream_size(lab, name)
    for _ in range(runs):
        for key, extra in [*ssh_ways.items(), ("shipper --via relay", ()), ("shipper --via direct", ())]:
            clear(lab, "b", name)
            via = "ssh" if "--via ssh" in key else key.rsplit(" ", 1)[1]
            seconds, peak, sent = shipper(lab, name, "b", via, *extra)
            m = ways[key]
            m.seconds.append(seconds), m.peak_mb.append(peak)
            m.stream_bytes = sent
        clear(lab, "b", name)
        ways["hand ssh pipe"].seconds.append(hand_pipe(lab, name, "b"))
        clear(lab, "b", name)
        ways["local limit"].seconds.append(local_limit(lab, name, "b"))
        clear(lab, "b", name)
        ways["docker load -i (a local file)"].seconds.append(load_from_file(lab, name, "b"))
        clear(lab, "b,c,d", name)
        seconds, peak, sent = shipper(lab, name, "b,c,d", "ssh")
        fan = ways["shipper fan-out b,c,d"]
        fan.seconds.append(seconds), fan.peak_mb.append(peak)
        fan.stream_bytes = sent
        clear(lab, "b,c,d", name)
        ways["hand pipes b, c, d in turn"].seconds.append(sum(hand_pipe(lab, name, t) for t in "bcd"))
    for key in ("hand ssh pipe", "local limit", "docker load -i (a local file)", "hand pipes b, c, d in turn"):
        ways[key].stream_bytes = size
    clear(lab, "b,c,d", name)
    return ways


THIN_WAYS = {
    "shipper --via ssh (store read)": ("ssh",),
    "shipper --via ssh --no-store-read": ("ssh", "--no-store-read"),
    "shipper --via relay": ("relay",),
    "shipper --via direct": ("direct",),
}


def bench_thin(lab: Lab, size_mb: int, runs: int) -> str:
    """An image whose base (90%) the target already holds: only the rest should cross."""
    base_layer, top_layer = (size_mb * 9 // 10 << 20) // 3, (size_mb // 10 << 20) // 2
    base = SyntheticImage("bench/base:1", tuple(Layer(base_layer, f"bench-base-{i}") for i in range(3)))
    app = SyntheticImage("bench/app:1", (*base.layers, *(Layer(top_layer, f"bench-app-{i}") for i in range(2))))
    lab.load_images("a", [app])
    lab.load_images("b", [base])
    missing = 2 * (top_layer + 2048)  # the two new layers' tars: their file plus directory, file header and end marker
    ways = {k: Measure() for k in [*THIN_WAYS, "hand ssh pipe"]}
    for _ in range(runs):
        for key, args in THIN_WAYS.items():
            clear(lab, "b", app.name)
            seconds, peak, sent = shipper(lab, app.name, "b", *args)
            ways[key].seconds.append(seconds), ways[key].peak_mb.append(peak)
            ways[key].stream_bytes = sent
        clear(lab, "b", app.name)
        ways["hand ssh pipe"].seconds.append(hand_pipe(lab, app.name, "b"))
    ways["hand ssh pipe"].stream_bytes = stream_size(lab, app.name)
    clear(lab, "b", app.name)
    lab.docker("b", "image", "rm", "-f", base.name, check=False)
    lab.docker("a", "image", "rm", "-f", app.name, check=False)
    hand = ways["hand ssh pipe"].median
    lines = [
        f"**{size_mb} MB image, {size_mb * 9 // 10} MB of it (3 base layers) already on the target; missing layers {missing / 1e6:.1f} MB**",
        "",
        "| way | median s | vs hand ssh pipe | MB to the target | vs missing layers | peak MB |",
        "|---|---|---|---|---|---|",
    ]
    for key, m in ways.items():
        peak = f"{max(m.peak_mb):.0f}" if m.peak_mb else "-"
        lines.append(
            f"| {key} | {m.median:.2f} | {m.median / hand:.2f} | {m.stream_bytes / 1e6:.1f} | {(m.stream_bytes / missing - 1) * 100:+.2f}% | {peak} |"
        )
    lines += ["", "Relay and direct also carry the whole save from the source to this machine; host to host, nothing but the missing layers leaves the source."]
    return "\n".join(lines)


def report(title: str, ways: dict[str, Measure]) -> str:
    hand, local, hand3 = ways["hand ssh pipe"].median, ways["local limit"].median, ways["hand pipes b, c, d in turn"].median
    lines = [f"**{title}**", "", "| way | median s | vs hand ssh pipe | vs local limit | stream MB per target | peak MB |", "|---|---|---|---|---|---|"]
    for key, m in ways.items():
        base = hand3 if "b,c,d" in key or "in turn" in key else hand
        peak = f"{max(m.peak_mb):.0f}" if m.peak_mb else "-"
        lines.append(f"| {key} | {m.median:.2f} | {m.median / base:.2f} | {m.median / local:.2f} | {m.stream_bytes / 1e6:.0f} | {peak} |")
    own = ways["docker load -i (a local file)"].median
    lines += ["", f"shipper --via ssh takes {ways['shipper --via ssh'].median / own:.2f}x the target's own `docker load -i` of the same archive."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--big-gb", type=float, default=0, help="also move one image this large and report peak memory")
    parser.add_argument("--keep", action="store_true", help="leave the bench lab running")
    parser.add_argument("--only-thin", action="store_true", help="only the image whose base the target holds")
    args = parser.parse_args()
    lab = Lab(BENCH_ROOT, BENCH_NET, ("a", "b", "c", "d"))
    lab.down(purge=True)
    lab.up(registry=False)
    layer = (args.size_mb << 20) // 5
    images = [
        ("random data, 5 layers", SyntheticImage("bench/random:1", tuple(Layer(layer, f"bench-random-{i}") for i in range(5)))),
        ("compressible text, 5 layers", SyntheticImage("bench/text:1", tuple(Layer(layer, f"bench-text-{i}", "text") for i in range(5)))),
    ]
    try:
        sections = [f"{args.size_mb} MB images, median of {args.runs} runs, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores"]
        sections.append(bench_thin(lab, args.size_mb, args.runs))
        for title, image in [] if args.only_thin else images:
            sections.append(report(f"{args.size_mb} MB, {title}", bench_image(lab, image, args.runs)))
            lab.docker("a", "image", "rm", "-f", image.name, check=False)
        if args.big_gb:
            big = SyntheticImage("bench/big:1", tuple(Layer(int(args.big_gb * (1 << 30)) // 8, f"bench-big-{i}") for i in range(8)))
            lab.load_images("a", [big])
            seconds, peak, sent = shipper(lab, big.name, "b", "ssh")
            sections.append(f"**{args.big_gb:g} GB image, shipper --via ssh**: {seconds:.1f} s, {sent / 1e6:.0f} MB streamed, peak memory {peak:.0f} MB")
        print("\n\n".join(sections))
    finally:
        if not args.keep:
            lab.down(purge=True)


if __name__ == "__main__":
    main()
