"""Files shipper puts on a host over SSH (a registry's CA for its engines, credentials): whole, private, atomic."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shipper.inventory import load_inventory
from shipper.lab import Lab
from shipper.transport.ssh import SSHSession


def test_writers_of_one_path_at_once_each_leave_a_whole_file_and_no_leftovers(lab: Lab, ssh_inventory: str, tmp_path: Path) -> None:
    # The lab's hosts share this machine's /etc/docker/certs.d, as hosts sharing a filesystem do: with one temporary
    # name for every writer, one writer's rename took the file another was about to chmod (registry up failed).
    target = tmp_path / "certs.d" / "registry:5443" / "ca.crt"
    inventory = load_inventory(ssh_inventory)
    contents = {name: (name * 4096).encode() for name in ("a", "b", "c")}

    def write(name: str) -> None:
        with SSHSession(inventory.host(name).ssh, name) as session:
            for _ in range(5):
                session.write_file(str(target), contents[name], mode=0o644)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(write, contents))

    assert target.read_bytes() in contents.values()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["ca.crt"]

