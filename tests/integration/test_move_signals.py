"""shipper ended from outside during a host-to-host move (SIGTERM, SIGHUP, SIGKILL): the target keeps
its tags and gets no image, the program on the source stops, and the private ssh-agent and its
socket directory are gone, even when shipper had no chance to clean up itself."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from shipper.lab import Lab
from shipper.transport.agent import PREFIX
from shipper.archive.wire import LATE
from shipper.inventory import load_inventory
from shipper.lab import image_id
from tests.integration.helpers import image_id_of, untagged_ids
from tests.integration.netfaults import StallingProxy
from tests.integration.test_move_faults import BIG, TRIGGER, FaultWhen, assert_rerun_succeeds, assert_untouched, parent, processes, staged  # noqa: F401
from tests.conftest import ShipperRunner


def agent_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), PREFIX + "*")))


def agents() -> list[int]:
    return [pid for pid, argv, _ in processes() if argv and argv[0].endswith("ssh-agent") and any(PREFIX in a for a in argv)]


def source_programs(lab: Lab) -> list[int]:
    """The host-to-host program running on the lab's host a (python3 -c <loader>)."""
    socket = f"unix://{lab.engine('a').socket}"
    return [
        pid for pid, argv, env in processes()
        if env.get("DOCKER_HOST") == socket and argv and "python3" in argv[0] and any("shipper-hostpipe" in a for a in argv)
    ]  # fmt: skip


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def start_move(lab: Lab, *extra: str) -> subprocess.Popen[bytes]:
    """shipper as a user runs it: its own process, the real entry point."""
    return subprocess.Popen(
        [sys.executable, "-m", "shipper", "move", BIG.name, "--from", "a", "--to", "b", "-i", str(lab.inventory_path), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"},
    )  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminated_move_cleans_up_and_leaves_the_target_as_it_was(shipper: ShipperRunner, staged: Lab, signum: int) -> None:
    dangling, dirs_before = untagged_ids(staged, "b"), agent_dirs()
    process = start_move(staged)

    with FaultWhen(staged, "b", "load", TRIGGER, lambda: process.send_signal(signum)) as fault:
        _, stderr = process.communicate(timeout=60)

    assert fault.fired.is_set(), (process.returncode, stderr)
    assert process.returncode == 128 + signum, stderr
    assert b"interrupted by SIG" in stderr
    assert agent_dirs() <= dirs_before and agents() == []
    assert wait_for(lambda: source_programs(staged) == [], 10)
    assert_untouched(staged, "b", dangling)
    assert_rerun_succeeds(shipper, staged, "b")


def test_a_killed_move_leaves_no_agent_no_program_and_no_image(shipper: ShipperRunner, staged: Lab) -> None:
    """SIGKILL: shipper cleans up nothing; the agent's guard and the program on the source do."""
    dangling, dirs_before = untagged_ids(staged, "b"), agent_dirs()
    process = start_move(staged)

    with FaultWhen(staged, "b", "load", TRIGGER, lambda: process.send_signal(signal.SIGKILL)) as fault:
        process.communicate(timeout=60)

    assert fault.fired.is_set() and process.returncode == -signal.SIGKILL
    assert wait_for(lambda: agent_dirs() <= dirs_before and agents() == [], 10)
    assert wait_for(lambda: source_programs(staged) == [], 15)
    time.sleep(1)  # the target's load sees its stream end broken, and fails
    assert_untouched(staged, "b", dangling)
    assert_rerun_succeeds(shipper, staged, "b")


def test_an_agent_left_by_a_killed_guard_is_removed_by_the_next_run(tmp_path: Path) -> None:
    from shipper.transport.agent import sweep_stale

    stale = tmp_path / f"{PREFIX}stale"
    stale.mkdir()
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(stale / "agent.sock")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (stale / "agent.pid").write_text(str(agent.pid))
    # Running, with its socket bound: swept before that, the agent could fail on its own (exit 1) before the kill.
    assert wait_for(lambda: (stale / "agent.sock").exists(), 5)
    (stale / "guard.pid").write_text("999999999")  # no such process
    live = tmp_path / f"{PREFIX}live"
    live.mkdir()
    (live / "guard.pid").write_text(str(os.getpid()))

    removed = sweep_stale(str(tmp_path))

    assert removed == [str(stale)]
    assert agent.wait(timeout=5) == -signal.SIGKILL
    assert live.is_dir()


def test_the_source_program_runs_on_shippers_own_session_with_the_agent_forwarded(staged: Lab) -> None:
    """No OpenSSH login to the source (a second key exchange, 0.3 s): the program runs on a channel of shipper's
    paramiko session, and the source's own ssh to the target logs in with the move's agent, forwarded over it
    (no agent of the user's here: SSH_AUTH_SOCK unset)."""
    process = start_move(staged, "--json")
    clients: set[tuple[str, ...]] = set()
    while process.poll() is None:
        for pid, argv, _ in processes():
            try:
                if argv and os.path.basename(argv[0]) == "ssh" and parent(pid) == process.pid:
                    clients.add(tuple(argv))
            except (OSError, ValueError, IndexError):
                continue  # it ended meanwhile
        time.sleep(0.02)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    [result] = [e for e in map(json.loads, stdout.splitlines()) if e["event"] == "result"]
    assert (result["status"], result["route"]) == ("moved", "host-to-host"), result
    assert image_id_of(staged, "b", BIG.name) == image_id(BIG)
    assert clients == set(), f"shipper started OpenSSH clients: {clients}"
    assert wait_for(lambda: source_programs(staged) == [] and agents() == [], 10)


def test_a_targets_login_starts_with_the_program_and_takes_its_command_from_the_plan(staged: Lab) -> None:
    """The source's login to a target starts before the plan (a handful of targets, host keys known): it waits
    for its command (wire.py's LATE), the plan gives it, and the image arrives over that same login."""
    process = start_move(staged, "--json")
    early: set[str] = set()
    while process.poll() is None:
        for pid, argv, _ in processes():
            if argv and os.path.basename(argv[0]) == "ssh" and any(LATE in a for a in argv):
                early.add([a for a in argv if a][-2])  # the target's address, before the command
        time.sleep(0.02)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    [result] = [e for e in map(json.loads, stdout.splitlines()) if e["event"] == "result"]
    assert (result["status"], result["route"]) == ("moved", "host-to-host"), result
    assert image_id_of(staged, "b", BIG.name) == image_id(BIG)
    assert early == {load_inventory(staged.inventory_path).host("b").ssh.hostname}

    again = start_move(staged, "--json")  # b has it now: the early login is let go of, having run nothing
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert [e["status"] for e in map(json.loads, out.splitlines()) if e["event"] == "result"] == ["unchanged"]
    assert wait_for(lambda: not any(any(LATE in a for a in argv) for _, argv, _ in processes()), 10)
    assert wait_for(lambda: source_programs(staged) == [], 10)


def test_a_move_through_a_registry_terminated_mid_pull_ends_at_once_and_leaves_the_targets_as_they_were(
    shipper: ShipperRunner, staged: Lab, tmp_path: Path
) -> None:  # fmt: skip
    """SIGTERM while b's and c's engines pull from a registry whose answers hang: shipper ends within seconds, not
    when the pulls would, both keep the tag they had, and no name of the registry is left on them."""
    host, port = staged.plain_registry.host_port.rsplit(":", 1)
    slow = f"{host}:5098"
    data = yaml.safe_load(staged.inventory_path.read_text())
    data["registries"] = {"slow": {"address": f"http://{slow}"}}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(data))
    dangling = {h: untagged_ids(staged, h) for h in ("b", "c")}

    with StallingProxy((host, 5098), (host, int(port)), 8 << 20) as proxy:
        process = subprocess.Popen(
            [sys.executable, "-m", "shipper", "move", BIG.name, "--from", "a", "--to", "b,c", "--via", "registry", "--registry", "slow",
             "-i", str(inventory)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proxy.stalled.wait(60), process.poll()
        time.sleep(0.5)  # both engines are pulling
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        ended = time.monotonic() - signalled

    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert b"interrupted by SIGTERM" in stderr
    assert ended < 3, f"shipper took {ended:.1f} s to end after SIGTERM: {stderr!r}"  # 0.01-0.04 s here; 5 s: a thread held the exit
    for target in ("b", "c"):
        assert_untouched(staged, target, dangling[target])
        listing = staged.docker(target, "images", "--digests", "--format", "{{.Repository}}").stdout
        assert slow not in listing, listing
