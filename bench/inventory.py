"""Benchmark: reading a large Ansible inventory, shipper against ansible-inventory, same output required.

    .venv/bin/python bench/inventory.py [--hosts 1000] [--groups 20] [--runs 3]

Writes an INI inventory of HOSTS hosts in GROUPS groups (inline host
variables, [group:vars], a parent group) with a group_vars file per group,
then times ``shipper hosts --list`` and ``ansible-inventory --list`` as
processes (start-up included, as a user meets it), checks that both print the
same inventory, and reports shipper's in-process load time and its peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from shipper.inventory import load_inventory  # noqa: E402


def write_inventory(directory: Path, hosts: int, groups: int) -> Path:
    per_group = max(1, hosts // groups)
    lines: list[str] = []
    for g in range(groups):
        lines.append(f"[g{g}]")
        lines += [f"h{g}-{i:04d} ansible_port={2000 + i} idx={i}" for i in range(per_group)]
        lines += [f"[g{g}:vars]", f"color=c{g}"]
    lines.append("[fleet:children]")
    lines += [f"g{g}" for g in range(groups)]
    (directory / "group_vars").mkdir()
    for g in range(groups):
        (directory / "group_vars" / f"g{g}.yml").write_text(f"file_var: {g}\napp_dir: /srv/g{g}\n")
    path = directory / "hosts"
    path.write_text("\n".join(lines) + "\n")
    return path


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        home = base / "home"
        home.mkdir()
        path = write_inventory(base, args.hosts, args.groups)
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(base / "tmp")}
        ours, theirs = [], []
        for _ in range(args.runs):
            seconds, shipper_out = timed([str(BIN / "shipper"), "hosts", "--list", "-i", str(path)], base, env)
            ours.append(seconds)
            seconds, ansible_out = timed([str(BIN / "ansible-inventory"), "-i", str(path), "--list"], base, env)
            theirs.append(seconds)
        expected = json.loads(ansible_out)
        expected["_meta"].pop("profile", None)
        same = json.loads(shipper_out) == expected
        os.environ["HOME"] = str(home)
        started = time.perf_counter()
        inventory = load_inventory(path)
        load = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"inventory: {len(inventory.hosts)} hosts, {args.groups} groups, group_vars files; same output as ansible-inventory: {same}")
    print(f"shipper hosts --list     {statistics.median(ours):.2f} s (median of {args.runs}, start-up included)")
    print(f"ansible-inventory --list {statistics.median(theirs):.2f} s")
    print(f"ratio shipper/ansible    {statistics.median(ours) / statistics.median(theirs):.2f}")
    print(f"shipper load, in-process {load:.2f} s; peak memory of this process {peak:.0f} MB")
    if not same:
        sys.exit("outputs differ")


if __name__ == "__main__":
    main()
