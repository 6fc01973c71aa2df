"""--forks: at most N hosts at once, for every command that works on hosts (Ansible's option and $ANSIBLE_FORKS)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from shipper import hostpool
from shipper.hostpool import worker_pool
from shipper.inventory import load_inventory
from shipper.inventory.model import Host
from tests.conftest import ShipperRunner


def busiest(count: int, tmp_path: Path) -> int:
    """How many of ``count`` hosts the pool worked on at once, each taking 20 ms."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n" + "".join(f"    h{i}:\n" for i in range(count)))
    hosts = list(load_inventory(inventory).hosts.values())
    lock, now, most = threading.Lock(), [0], [0]

    def work(host: Host) -> None:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.02)
        with lock:
            now[0] -= 1

    hostpool.for_each_host(hosts, work)
    return most[0]


def test_the_pool_works_on_at_most_forks_hosts_at_once(tmp_path: Path) -> None:
    try:
        hostpool.set_forks(3)
        assert busiest(10, tmp_path) == 3
        hostpool.set_forks(1)
        assert busiest(4, tmp_path) == 1
    finally:
        hostpool.set_forks(hostpool.MAX_PARALLEL_HOSTS)


def test_forks_is_taken_before_or_after_the_command_and_from_ansible_forks(
    shipper: ShipperRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    a: {ansible_host: 10.0.0.1}\n")

    assert shipper("--forks", "4", "hosts", "-i", str(inventory)).status == 0 and hostpool.forks() == 4
    assert shipper("hosts", "-i", str(inventory), "--forks=2").status == 0 and hostpool.forks() == 2
    monkeypatch.setenv("ANSIBLE_FORKS", "7")
    assert shipper("hosts", "-i", str(inventory)).status == 0 and hostpool.forks() == 7
    refused = shipper("hosts", "-i", str(inventory), "--forks", "0")
    assert refused.status == 2 and "--forks" in refused.stderr
    monkeypatch.delenv("ANSIBLE_FORKS")
    assert shipper("hosts", "-i", str(inventory)).status == 0 and hostpool.forks() == hostpool.MAX_PARALLEL_HOSTS


def test_a_pool_left_by_an_interruption_drops_its_queued_work_and_does_not_wait_for_the_running() -> None:
    release, started = threading.Event(), []

    def work(n: int) -> None:
        started.append(n)
        release.wait(10)

    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with worker_pool(1) as pool:
            pool.submit(work, 1)
            queued = pool.submit(work, 2)
            while not started:
                time.sleep(0.01)
            raise KeyboardInterrupt

    assert time.monotonic() - began < 1
    release.set()
    assert queued.cancelled() and started == [1]


def test_a_pool_left_by_an_error_waits_for_its_work() -> None:
    done = []
    with pytest.raises(ValueError):
        with worker_pool(2) as pool:
            pool.submit(lambda: (time.sleep(0.2), done.append(1)))
            raise ValueError("the caller's own error")
    assert done == [1]
