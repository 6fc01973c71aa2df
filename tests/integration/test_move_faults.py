"""Faults during a move: a clear error naming the host and stage, a non-zero exit,
the target's tags exactly as before, nothing left behind, and a rerun that succeeds.

Faults are injected at a byte count through the progress reporter, so they
land mid-stream every time instead of by timing.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Callable

import pytest

from shipper.errors import ShipperError
from shipper.inventory import load_inventory, select
from shipper.lab import Lab, Layer, SyntheticImage, image_id
from shipper.ops.move_plan import plan_move
from shipper.ops.move_run import TargetResult, run_move
from tests.conftest import ShipperRunner
from tests.integration.helpers import image_id_of, remove, untagged_ids

BIG = SyntheticImage("lab/fault:2", tuple(Layer(32 << 20, f"fault-{i}") for i in range(3)))
OLD = SyntheticImage("lab/fault:2", (Layer(1024, "fault-old"),))  # what the targets had under the tag before
TRIGGER = 24 << 20  # bytes into the stream


class FaultAt:
    """A reporter that runs ``action`` once, when ``host`` has been sent ``threshold`` bytes."""

    def __init__(self, host: str, threshold: int, action: Callable[[], None]) -> None:
        self.host, self.threshold, self.action = host, threshold, action
        self.fired = threading.Event()

    def start(self, host: str, total: int | None) -> None:
        pass

    def advance(self, host: str, done: int) -> None:
        if host == self.host and done >= self.threshold and not self.fired.is_set():
            self.fired.set()
            self.action()

    def finish(self, host: str, status: str) -> None:
        pass


def processes() -> list[tuple[int, list[str], dict[str, str]]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
                env = dict(kv.split("=", 1) for kv in (entry / "environ").read_bytes().decode(errors="replace").split("\0") if "=" in kv)
            except OSError:
                continue
            found.append((int(entry.name), argv, env))
    return found


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def remote_docker(lab: Lab, host: str, verb: str) -> int:
    """The pid of ``docker VERB`` that a lab host's sshd runs for shipper."""
    socket = f"unix://{lab.engine(host).socket}"
    for pid, argv, env in processes():
        if env.get("DOCKER_HOST") == socket and len(argv) > 1 and argv[0].endswith("docker") and argv[1] == verb:
            return pid
    raise AssertionError(f"no 'docker {verb}' running for host {host}")


def kill_ssh_session(lab: Lab, host: str, verb: str) -> None:
    """Kill the sshd process carrying that command: the connection dies mid-stream."""
    pid = remote_docker(lab, host, verb)
    while not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sshd"):
        pid = parent(pid)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def staged(lab: Lab) -> Lab:
    """BIG on a; on b and c the tag names an older image."""
    lab.load_images("a", [BIG])
    remove(lab, "b,c", BIG.name, image_id(BIG))
    lab.load_images("b", [OLD])
    lab.load_images("c", [OLD])
    return lab


def move_with(lab: Lab, targets: str, reporter: object) -> list[TargetResult]:
    inventory = load_inventory(lab.inventory_path)
    plan = plan_move(inventory.host("a"), select(inventory, targets), [BIG.name], "ssh")
    return run_move(plan, reporter)  # type: ignore[arg-type]


def assert_untouched(lab: Lab, host: str, dangling_before: set[str]) -> None:
    assert image_id_of(lab, host, BIG.name) == image_id(OLD)
    assert image_id_of(lab, host, image_id(BIG)) is None
    assert untagged_ids(lab, host) <= dangling_before


def assert_rerun_succeeds(shipper: ShipperRunner, lab: Lab, targets: str) -> None:
    result = shipper("move", BIG.name, "--from", "a", "--to", targets, "-i", str(lab.inventory_path))
    assert result.status == 0, result.stderr
    for host in targets.split(","):
        assert image_id_of(lab, host, BIG.name) == image_id(BIG)


def test_the_ssh_connection_to_a_target_killed_mid_stream(shipper: ShipperRunner, staged: Lab) -> None:
    dangling = untagged_ids(staged, "b")
    fault = FaultAt("b", TRIGGER, lambda: kill_ssh_session(staged, "b", "load"))

    [result] = move_with(staged, "b", fault)

    assert fault.fired.is_set()
    assert result.status == "failed" and result.error is not None
    assert result.error.message.startswith("the SSH session for load on b (ssh://")
    assert_untouched(staged, "b", dangling)
    assert_rerun_succeeds(shipper, staged, "b")


def test_the_source_killed_mid_save_fails_every_target_and_touches_none(shipper: ShipperRunner, staged: Lab) -> None:
    dangling = {h: untagged_ids(staged, h) for h in "bc"}
    fault = FaultAt("b", TRIGGER, lambda: os.kill(remote_docker(staged, "a", "save"), signal.SIGKILL))

    results = move_with(staged, "b,c", fault)

    assert fault.fired.is_set()
    for result in results:
        assert result.status == "failed" and result.error is not None
        assert "save on a (ssh://" in result.error.message
        assert_untouched(staged, result.host, dangling[result.host])
    assert_rerun_succeeds(shipper, staged, "b,c")


def test_a_target_engine_stopped_during_the_load_fails_alone(shipper: ShipperRunner, staged: Lab) -> None:
    dangling = untagged_ids(staged, "b")

    def stop_b() -> None:
        staged.stop_engine("b")

    try:
        results = move_with(staged, "b,c", FaultAt("b", TRIGGER, stop_b))
    finally:
        staged.start_host("b")

    by_host = {r.host: r for r in results}
    assert by_host["b"].status == "failed" and by_host["b"].error is not None
    assert by_host["b"].error.message.startswith("the engine stopped answering during load on b")
    assert "start dockerd on b" in (by_host["b"].error.hint or "")
    assert by_host["c"].status == "moved" and image_id_of(staged, "c", BIG.name) == image_id(BIG)
    assert_untouched(staged, "b", dangling)
    assert_rerun_succeeds(shipper, staged, "b")


def test_the_cli_says_what_failed_where_and_exits_non_zero(shipper: ShipperRunner, staged: Lab) -> None:
    staged.stop_engine("b")
    try:
        result = shipper("move", BIG.name, "--from", "a", "--to", "b", "-i", str(staged.inventory_path))
    finally:
        staged.start_host("b")

    assert result.status == 3
    assert result.stderr.startswith("error: cannot reach the engine on b")
    assert "Traceback" not in result.stderr


def test_the_source_image_removed_after_the_plan_fails_cleanly(staged: Lab) -> None:
    inventory = load_inventory(staged.inventory_path)
    plan = plan_move(inventory.host("a"), [inventory.host("b")], [BIG.name], "ssh")
    dangling = untagged_ids(staged, "b")
    staged.docker("a", "image", "rm", "-f", BIG.name)

    [result] = run_move(plan)

    assert result.status == "failed" and isinstance(result.error, ShipperError)
    assert result.error.message == f"save on {inventory.host('a').describe()} failed: {BIG.name} was removed from it during the move"
    assert "put the image back on a" in (result.error.hint or "")
    assert_untouched(staged, "b", dangling)


def test_the_source_image_removed_mid_save_arrives_whole_or_not_at_all(staged: Lab) -> None:
    dangling = untagged_ids(staged, "b")
    fault = FaultAt("b", 1, lambda: staged.docker("a", "image", "rm", "-f", BIG.name))

    [result] = move_with(staged, "b", fault)

    assert fault.fired.is_set()
    if result.status == "moved":  # 20.10 holds the layers of an image it is saving, and finishes the save
        assert image_id_of(staged, "b", BIG.name) == image_id(BIG)
    else:
        assert_untouched(staged, "b", dangling)
