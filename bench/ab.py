"""Benchmark: revisions of shipper against each other, alternating, on one lab, with the target's own load.

    .venv/bin/python bench/ab.py REV [REV ...] [--rounds 5] [--size-mb 500] [--kind random|text] [--extra "--compress none"]

A REV may carry arguments of its own after ``::`` (``".::--compress none"``): one tree, two ways of running it.

This machine's speed drifts by a third within an hour, so two benchmark runs an
hour apart cannot say whether a change helped. Here every round moves the same
image host to host (a -> b, ``--via ssh``) once with each revision, then runs the
target's own ``docker load -i`` of the same archive; the image is removed from
the target before each. Each revision runs from a git worktree of its own
(``/tmp/shipper-ab/REV``) with this project's virtualenv. Printed: each way's
median and its ratio to ``docker load -i`` of the same rounds (#19's fast-link
figure), and every round's times.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shipper.lab import Lab, Layer, SyntheticImage  # noqa: E402

AB_ROOT = Path("/tmp/shipper-ab")
AB_NET = "127.0.3"
LOAD_I = "docker load -i"


def worktree(revision: str) -> Path:
    """A checkout of ``revision`` (a commit, a branch, or "." for the working tree as it is)."""
    if revision == ".":
        return ROOT
    path = AB_ROOT / "trees" / revision.replace("/", "_")
    if not path.is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), revision], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(path / "shipper")], check=True)  # not timed: no first-run compiling
    return path


def timed(argv: list[str], cwd: Path | None = None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(argv)}\n{done.stderr.decode(errors='replace')}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revisions", nargs="+", help='git revisions; "." is the working tree; REV::ARGS adds arguments')
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--kind", choices=("random", "text"), default="random")
    parser.add_argument("--extra", default="", help="more arguments for every shipper move")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    args = parser.parse_args()

    layer = (args.size_mb << 20) // 5
    image = SyntheticImage(f"ab/{args.kind}:{args.size_mb}", tuple(Layer(layer, f"ab-{args.kind}-{args.size_mb}-{i}", args.kind) for i in range(5)))
    lab = Lab(AB_ROOT / "lab", AB_NET, ("a", "b"))
    lab.up(registry=False)
    trees = {way: worktree(way.partition("::")[0]) for way in args.revisions}
    try:
        lab.load_images("a", [image])
        archive = AB_ROOT / f"{args.kind}-{args.size_mb}.tar"
        if not archive.exists():
            subprocess.run(f"docker -H unix://{lab.engine('a').socket} save {image.name} > {archive}", shell=True, check=True)
        times: dict[str, list[float]] = {way: [] for way in [*args.revisions, LOAD_I]}
        for round_number in range(1, args.rounds + 1):
            for way in times:
                lab.docker("b", "image", "rm", "-f", image.name, check=False)
                time.sleep(1)  # the engine's removal settles
                if way == LOAD_I:
                    times[way].append(timed(["docker", "-H", f"unix://{lab.engine('b').socket}", "load", "-q", "-i", str(archive)]))
                else:
                    argv = [sys.executable, "-m", "shipper", "move", image.name, "--from", "a", "--to", "b", "--via", "ssh", "-i", str(lab.inventory_path)]
                    times[way].append(timed([*argv, *shlex.split(args.extra), *shlex.split(way.partition("::")[2])], cwd=trees[way]))
            print(f"round {round_number}: " + ", ".join(f"{way} {seconds[-1]:.2f} s" for way, seconds in times.items()), flush=True)
        base = statistics.median(times[LOAD_I])
        print(f"\n{args.size_mb} MB, {args.kind}, 5 layers, {args.rounds} rounds, {time.strftime('%Y-%m-%d %H:%M')}, extra: {args.extra or '-'}\n")
        print(f"| way | median s | vs {LOAD_I} | every round |")
        print("|---|---|---|---|")
        for way, seconds in times.items():
            median = statistics.median(seconds)
            print(f"| {way} | {median:.2f} | {median / base:.2f}x | {' '.join(f'{s:.2f}' for s in seconds)} |")
    finally:
        if not args.keep:
            lab.down(purge=True)


if __name__ == "__main__":
    main()
