"""Benchmark: the control plane at fleet size: ``ping``, ``images`` and ``move --dry-run`` over N hosts.

    .venv/bin/python bench/control.py [--hosts 48] [--runs 3] [--baseline DIR]

A lab of N hosts on this machine (each its own dockerd and sshd on its own
loopback address, so the hosts' side shares this machine's CPU with shipper),
a small image loaded on every host, then each command timed as a process, as
a user meets it (start-up included), ``--forks`` left at its default:

- ``shipper ping all``;
- ``shipper images all``;
- ``shipper move IMG --from h01 --to all --dry-run`` (every host has the image:
  each target is surveyed, and each is ``unchanged``).

Reports the median wall seconds, shipper's own CPU (user + system of the
shipper process alone, every thread: its ssh and other children not counted),
that CPU per host, and the CPU all processes on the machine spent meanwhile
(``/proc/stat``: shipper, its ssh clients, every sshd and dockerd).
``--baseline DIR`` times another checkout alternately on the same lab.
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

from shipper.lab import Lab, Layer, SyntheticImage  # noqa: E402

BENCH_ROOT = Path("/tmp/shipper-bench-ctl")
BENCH_NET = "127.0.4"
IMAGE = SyntheticImage("bench/fleet-small:1", (Layer(1 << 20, "fleet-small"),))

# Runs shipper in this process and writes its own CPU seconds (every thread, no children) to the fd it is given.
RUNNER = """
import os, resource, sys
from shipper.cli.main import run
report = int(sys.argv[1])
status = run(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_SELF)
os.write(report, f"{usage.ru_utime + usage.ru_stime}".encode())
sys.exit(status)
"""


def machine_cpu() -> float:
    """CPU seconds every process on the machine has spent (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(x) for i, x in enumerate(fields) if i not in (3, 4))  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str], root: Path = ROOT) -> tuple[float, float, float]:
    """Wall seconds, shipper's own CPU seconds, every process's CPU seconds (shipper as checked out at ``root``)."""
    read, write = os.pipe()
    cpu_before, start = machine_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(write), *argv], pass_fds=(write,), capture_output=True, cwd=root)
    wall, cpu_all = time.perf_counter() - start, machine_cpu() - cpu_before
    os.close(write)
    own = float(os.read(read, 100) or 0)
    os.close(read)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {argv}\n{proc.stderr.decode(errors='replace')[-2000:]}")
    return wall, own, cpu_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=48)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--baseline", type=Path, metavar="DIR",
        help="a checkout of another revision (git worktree add DIR REV): each command timed with it too, alternately, "
        "on the same lab (this machine's speed drifts by a third over a day: compare within one run)",
    )  # fmt: skip
    args = parser.parse_args()
    roots = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    names = tuple(f"h{i:02d}" for i in range(1, args.hosts + 1))
    # As an installed shipper runs: pip compiles every module when it installs one; an editable install run with
    # PYTHONDONTWRITEBYTECODE set would compile shipper's own modules again in every process.
    for root in roots.values():
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "shipper")], check=True, capture_output=True)
    lab = Lab(BENCH_ROOT, BENCH_NET, names)
    lab.down(purge=True)
    started = time.perf_counter()
    lab.up()
    print(f"lab of {args.hosts} hosts up in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    try:
        for name in names:
            lab.load_images(name, [IMAGE])
        inventory = str(lab.inventory_path)
        commands = {
            "ping all": ["ping", "all", "-i", inventory],
            "images all": ["images", "all", "-i", inventory],
            "move --dry-run (every host has it)": ["move", IMAGE.name, "--from", names[0], "--to", "all", "--dry-run", "-i", inventory],
        }
        for root in roots.values():
            timed(commands["ping all"], root)  # warm: page cache, sshd's first forks
        print(f"{args.hosts} hosts (each a dockerd and an sshd on this machine), median of {args.runs} runs, {time.strftime('%Y-%m-%d')}, "
              f"{os.cpu_count()} cores\n")  # fmt: skip
        print("| command | shipper | wall s | shipper CPU s | shipper CPU per host ms | all processes' CPU s |\n|---|---|---|---|---|---|")
        for label, argv in commands.items():
            runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in roots}
            for _ in range(args.runs):
                for name, root in roots.items():  # alternately: both meet the same machine
                    runs[name].append(timed(argv, root))
            for name in roots:
                wall, own, everything = (statistics.median(r[i] for r in runs[name]) for i in range(3))
                print(f"| `shipper {label}` | {name} | {wall:.2f} | {own:.2f} | {own / args.hosts * 1000:.0f} | {everything:.1f} |", flush=True)
    finally:
        lab.down(purge=True)


if __name__ == "__main__":
    main()
