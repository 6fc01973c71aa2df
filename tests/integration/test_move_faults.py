"""Faults during a move: a clear error naming the host and stage, a non-zero exit,
the target's tags exactly as before, nothing left behind, and a rerun that succeeds.

Faults are injected when the remote docker process has moved a given number
of bytes (watched in /proc), so they land mid-stream on every route.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from shipper.errors import ShipperError
from shipper.inventory import load_inventory, select
from shipper.lab import Lab, Layer, SyntheticImage, image_id
from shipper.ops.move_plan import RouteRequest, plan_move
from shipper.ops.move_run import TargetResult, run_move
from tests.conftest import ShipperRunner, events, one
from tests.integration.helpers import carrier_ids, image_id_of, remove, untagged_ids, write_inventory

BIG = SyntheticImage("lab/fault:2", tuple(Layer(32 << 20, f"fault-{i}") for i in range(3)))
OLD = SyntheticImage("lab/fault:2", (Layer(1024, "fault-old"),))  # what the targets had under the tag before
TRIGGER = 24 << 20  # bytes into the stream


class FaultWhen:
    """Runs ``action`` once, as soon as the lab host's ``docker VERB`` has moved ``threshold`` bytes.

    It watches the real process (``/proc/PID/io``: bytes read by ``docker load``,
    written by ``docker save``), so the fault lands mid-stream whatever the route.
    """

    def __init__(self, lab: Lab, host: str, verb: str, threshold: int, action: Callable[[], None]) -> None:
        self.lab, self.host, self.verb, self.threshold, self.action = lab, host, verb, threshold, action
        self.fired = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        field = "rchar" if self.verb in ("load", "receive") else "wchar"
        while not self._stop.is_set():
            pid = find_remote_docker(self.lab, self.host, self.verb)
            try:
                if pid is not None and self.verb in ("load", "receive") and not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"docker"):
                    # The receiver: the kernel moves a layer's bytes on (splice), which its read count leaves out.
                    # What its sshd wrote into its input counts them all.
                    pid, field = sshd_of(pid), "wchar"
            except (OSError, ValueError, IndexError):  # it ended meanwhile
                pid = None
            if pid is not None:
                try:
                    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
                except OSError:
                    io = {}
                if int(io.get(field, 0)) >= self.threshold:
                    self.action()
                    self.fired.set()
                    return
            time.sleep(0.005)

    def __enter__(self) -> "FaultWhen":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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


def find_remote_docker(lab: Lab, host: str, verb: str) -> int | None:
    """The pid of ``docker VERB`` that a lab host's sshd runs for shipper, if one runs; ``receive``: the unframer
    in front of the resumable receiver (archive/wire.py, receiver.py), the process that reads the stream there
    and nothing else (the receiver's own count takes in its carriers' loads once they end). ``load`` means the
    same where there is one: a fault then lands mid-stream, as it did when docker load read the stream itself."""
    socket = f"unix://{lab.engine(host).socket}"
    found: dict[str, int] = {}
    for pid, argv, env in processes():
        if env.get("DOCKER_HOST") != socket or len(argv) < 2:
            continue
        code = " ".join(argv[1:5])
        if "python" in argv[0] and "decompressobj" in code:
            found["unframer"] = pid
        elif "python" in argv[0] and "io.shipper.carrier" in code:
            found["receiver"] = pid
        elif argv[0].endswith("docker") and argv[1] == verb:
            found["docker"] = pid
    if verb in ("load", "receive"):  # the process that reads the stream on the target: the first in its pipe
        return found.get("unframer") or found.get("receiver") or (found.get("docker") if verb == "load" else None)
    return found.get("docker")


def receiver_running(lab: Lab, host: str) -> bool:
    socket = f"unix://{lab.engine(host).socket}"
    return any(
        env.get("DOCKER_HOST") == socket and "python" in argv[0] and "io.shipper.carrier" in " ".join(argv[1:5]) for _, argv, env in processes()
    )  # fmt: skip


def remote_docker(lab: Lab, host: str, verb: str) -> int:
    pid = find_remote_docker(lab, host, verb)
    assert pid is not None, f"no 'docker {verb}' running for host {host}"
    return pid


def sshd_of(pid: int) -> int:
    """The sshd process carrying the command ``pid`` runs in."""
    while not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sshd"):
        pid = parent(pid)
    return pid


def kill_ssh_session(lab: Lab, host: str, verb: str) -> None:
    """Kill the sshd process carrying that command: the connection dies mid-stream."""
    os.kill(sshd_of(remote_docker(lab, host, verb)), signal.SIGKILL)


@pytest.fixture
def staged(lab: Lab) -> Lab:
    """BIG on a; on b and c the tag names an older image."""
    lab.load_images("a", [BIG])
    remove(lab, "b,c", BIG.name, image_id(BIG))
    lab.load_images("b", [OLD])
    lab.load_images("c", [OLD])
    return lab


def move(lab: Lab, targets: str, via: RouteRequest = "ssh", store_read: bool = True) -> list[TargetResult]:
    """``store_read=False``: host to host, the source runs docker save (the faults that kill it need one)."""
    inventory = load_inventory(lab.inventory_path)
    plan = plan_move(inventory.host("a"), select(inventory, targets), [BIG.name], via, store_read=store_read)
    return run_move(plan)


ROUTES = pytest.mark.parametrize("via", ["ssh", "relay"])  # host to host, and through this machine


def assert_untouched(lab: Lab, host: str, dangling_before: set[str]) -> None:
    """The tag as it was, the image not there; new untagged images only the carriers of layers that arrived whole."""
    assert image_id_of(lab, host, BIG.name) == image_id(OLD)
    assert image_id_of(lab, host, image_id(BIG)) is None
    assert untagged_ids(lab, host) - dangling_before <= carrier_ids(lab, host)


def assert_rerun_succeeds(shipper: ShipperRunner, lab: Lab, targets: str) -> None:
    result = shipper("move", BIG.name, "--from", "a", "--to", targets, "-i", str(lab.inventory_path))
    assert result.status == 0, result.stderr
    for host in targets.split(","):
        assert image_id_of(lab, host, BIG.name) == image_id(BIG)


@ROUTES
def test_the_ssh_connection_to_a_target_killed_mid_stream(shipper: ShipperRunner, staged: Lab, via: RouteRequest) -> None:
    dangling = untagged_ids(staged, "b")

    with FaultWhen(staged, "b", "load", TRIGGER, lambda: kill_ssh_session(staged, "b", "load")) as fault:
        [result] = move(staged, "b", via)

    assert fault.fired.is_set()
    assert result.status == "failed" and result.error is not None
    assert result.error.message.startswith("the SSH session for load") and "on b (ssh://" in result.error.message
    assert_untouched(staged, "b", dangling)
    assert_rerun_succeeds(shipper, staged, "b")


@ROUTES
def test_the_source_killed_mid_save_fails_every_target_and_touches_none(shipper: ShipperRunner, staged: Lab, via: RouteRequest) -> None:
    dangling = {h: untagged_ids(staged, h) for h in "bc"}

    with FaultWhen(staged, "a", "save", TRIGGER, lambda: os.kill(remote_docker(staged, "a", "save"), signal.SIGKILL)) as fault:
        results = move(staged, "b,c", via, store_read=False)

    assert fault.fired.is_set()
    for result in results:
        assert result.status == "failed" and result.error is not None
        assert "save on a (ssh://" in result.error.message or "stream from a (ssh://" in result.error.message
        assert_untouched(staged, result.host, dangling[result.host])
    assert_rerun_succeeds(shipper, staged, "b,c")


@ROUTES
def test_a_target_engine_stopped_during_the_load_fails_alone(shipper: ShipperRunner, staged: Lab, via: RouteRequest) -> None:
    dangling = untagged_ids(staged, "b")

    try:
        with FaultWhen(staged, "b", "load", TRIGGER, lambda: staged.stop_engine("b")) as fault:
            results = move(staged, "b,c", via)
    finally:
        staged.start_host("b")

    assert fault.fired.is_set()

    by_host = {r.host: r for r in results}
    assert by_host["b"].status == "failed" and by_host["b"].error is not None
    # Mid-stream it is the load that fails; if the whole stream got there first, the check after it.
    message, hint = by_host["b"].error.message, by_host["b"].error.hint or ""
    assert message.startswith(("the engine stopped answering during", "cannot reach the engine on b"))
    assert "start dockerd" in hint
    assert by_host["c"].status == "moved" and image_id_of(staged, "c", BIG.name) == image_id(BIG)
    if image_id_of(staged, "b", image_id(BIG)) is not None:
        # b's daemon finished loading before it stopped: the image is complete (its digests
        # were checked by the load) but untagged, and shipper could not remove it: it says so.
        assert image_id_of(staged, "b", BIG.name) == image_id(OLD)
        assert "could not check for leftovers" in by_host["b"].note
    else:
        assert_untouched(staged, "b", dangling)
    assert_rerun_succeeds(shipper, staged, "b")


def test_the_cli_says_what_failed_where_and_exits_non_zero(shipper: ShipperRunner, staged: Lab) -> None:
    staged.stop_engine("b")
    try:
        result = shipper("move", BIG.name, "--from", "a", "--to", "b", "-i", str(staged.inventory_path))
    finally:
        staged.start_host("b")

    assert result.status == 3
    assert "\nerror: cannot reach the engine on b" in "\n" + result.stderr  # after the phase lines of a log
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

    with FaultWhen(staged, "a", "save", 0, lambda: staged.docker("a", "image", "rm", "-f", BIG.name)) as fault:
        [result] = move(staged, "b", store_read=False)

    assert fault.fired.is_set()
    if result.status == "moved":  # 20.10 holds the layers of an image it is saving, and finishes the save
        assert image_id_of(staged, "b", BIG.name) == image_id(BIG)
    else:
        assert_untouched(staged, "b", dangling)


def test_a_corrupt_byte_reaching_a_target_is_refused_by_its_load_and_creates_nothing(staged: Lab) -> None:
    from shipper.archive.fanout import pump
    from shipper.lab import save_stream
    from shipper.transfer import make_sink, sink_error

    image = SyntheticImage("lab/corrupt:1", (Layer(2 << 20, "corrupt-base"),))
    data = bytearray(b"".join(bytes(c) for c in save_stream([image])))
    data[len(data) // 3] ^= 0x01  # inside the layer
    host = load_inventory(staged.inventory_path).host("b")
    sink = make_sink("ssh", host)

    pump([bytes(data)], [sink], [image_id(image)])
    sink.finish()

    error = sink_error(host, sink)
    assert error is not None and "invalid diffID for layer 0" in error.message
    assert image_id_of(staged, "b", image_id(image)) is None


@pytest.fixture(scope="module")
def small_disk() -> Iterator[Lab]:
    """A lab host whose engine has 96 MB of disk (a tmpfs data root): BIG cannot fit."""
    lab = Lab(Path("/tmp/shipper-lab-full"), "127.0.11", ("full",), disk_mb={"full": 96})
    lab.down(purge=True)
    lab.up(registry=False)
    yield lab
    lab.down(purge=True)


def test_a_target_whose_disk_fills_up_fails_clearly_and_keeps_its_tags(
    shipper: ShipperRunner, staged: Lab, small_disk: Lab, tmp_path: Path
) -> None:
    small_disk.load_images("full", [OLD])
    inventory = write_inventory(
        tmp_path / "hosts.yml", {"a": {"ssh_config_file": str(staged.ssh_config)}, "full": {"ssh_config_file": str(small_disk.ssh_config)}}
    )

    result = shipper("move", BIG.name, "--from", "a", "--to", "full", "-i", inventory)

    assert result.status == 1
    assert "no space left on device" in result.stderr
    assert "hint: free space under the engine's data root on full" in result.stderr
    assert image_id_of(small_disk, "full", BIG.name) == image_id(OLD)
    assert image_id_of(small_disk, "full", image_id(BIG)) is None


RESUMED = SyntheticImage("lab/resume:1", tuple(Layer(24 << 20, f"resume-{i}") for i in range(4)))  # 96 MiB in 4 layers


@pytest.mark.parametrize("retry", [False, True])
def test_a_move_cut_mid_stream_keeps_what_arrived_and_the_next_attempt_sends_only_the_rest(
    shipper: ShipperRunner, lab: Lab, retry: bool
) -> None:  # fmt: skip
    """The link to the target dies after about 70% of the image: the layers that arrived whole stay there (as
    untagged carriers, never under the tag); a rerun, or --retry within the same command, sends only the rest."""
    lab.load_images("a", [RESUMED])
    remove(lab, "b", RESUMED.name, image_id(RESUMED))
    inventory = str(lab.inventory_path)
    args = ("move", RESUMED.name, "--from", "a", "--to", "b", "-i", inventory, "--json")
    total = sum(layer.size for layer in RESUMED.layers)

    with FaultWhen(lab, "b", "receive", int(total * 0.7), lambda: kill_ssh_session(lab, "b", "receive")) as fault:
        first = shipper(*args, *(["--retry", "2"] if retry else []))

    assert fault.fired.is_set()
    if retry:
        assert first.status == 0, first.stderr
        [again] = events(first.stdout, "retry")
        assert again["host"] == "b" and again["attempt"] == 2 and again["after"]["type"] == "SSHError"
        result = one(first.stdout, "result")
        assert result["attempts"] == 2 and result["bytes_before"] > total * 0.6
    else:
        assert first.status != 0
        wait_for_receivers(lab, "b")  # the cut receiver loads what arrived whole, then ends
        assert image_id_of(lab, "b", RESUMED.name) is None  # the tag never points at anything new
        assert len(carrier_ids(lab, "b")) >= 2  # layers 1 and 2 at least arrived whole
        rerun = shipper(*args)
        assert rerun.status == 0, rerun.stderr
        plan = one(rerun.stdout, "plan")["targets"][0]
        assert plan["resumed_layers"] >= 2 and plan["layers"]["present"] >= 2
        result = one(rerun.stdout, "result")
    assert result["bytes_sent"] <= total * 0.55  # of the 4 layers, at most 2 cross again
    assert image_id_of(lab, "b", RESUMED.name) == image_id(RESUMED)
    wait_for_receivers(lab, "b")  # a cut one may end after the retry (it loads what arrived, then removes carriers)
    assert carrier_ids(lab, "b") == set()  # gone once the image holds their layers


@pytest.mark.parametrize("then", ["loaded by hand", "through a registry"])
def test_carriers_a_cut_left_are_removed_by_the_next_move_that_finds_the_image_whole_or_pulls_it(
    shipper: ShipperRunner, lab: Lab, tmp_path: Path, then: str
) -> None:  # fmt: skip
    """A cut leaves carriers on b; the image then reaches b another way (loaded by hand, or the next move goes
    through a registry, where no receiver runs to remove them): that move removes the carriers, whose layers the
    image now holds, and says so."""
    from tests.integration.test_move_registry import registry_inventory

    lab.load_images("a", [RESUMED])
    remove(lab, "b", RESUMED.name, image_id(RESUMED))
    args = ("move", RESUMED.name, "--from", "a", "--to", "b", "--json")
    total = sum(layer.size for layer in RESUMED.layers)
    with FaultWhen(lab, "b", "receive", int(total * 0.7), lambda: kill_ssh_session(lab, "b", "receive")) as fault:
        cut = shipper(*args, "-i", str(lab.inventory_path))
    assert fault.fired.is_set() and cut.status != 0
    wait_for_receivers(lab, "b")
    left = carrier_ids(lab, "b")
    assert left

    if then == "loaded by hand":
        lab.load_images("b", [RESUMED])
        result, status = shipper(*args, "-i", str(lab.inventory_path)), "unchanged"
    else:
        result, status = shipper(*args, "--via", "registry", "--registry", "plain", "-i", registry_inventory(lab, tmp_path)), "moved"

    assert result.status == 0, result.stderr
    outcome = one(result.stdout, "result")
    assert outcome["status"] == status and f"removed {len(left)} carrier(s) an interrupted move left" in outcome["note"], outcome
    assert carrier_ids(lab, "b") == set()
    assert image_id_of(lab, "b", RESUMED.name) == image_id(RESUMED)


def wait_for_receivers(lab: Lab, host: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while receiver_running(lab, host) and time.monotonic() < deadline:
        time.sleep(0.1)


def when_the_final_load_runs(lab: Lab, host: str, action: Callable[[], None]) -> threading.Thread:
    """Runs ``action`` once the receiver on ``host`` has the whole stream and runs the image's own load (its spool's
    ``phase`` file says so: the load goes to the engine's socket, no ``docker load`` process to see)."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for phase in Path("/var/tmp").glob("shipper-receive-*/phase"):
                try:
                    loading = phase.read_text() == "loading the image\n"
                except OSError:
                    continue
                if loading and receiver_running(lab, host):
                    action()
                    return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_link_dropped_after_the_last_byte_leaves_the_image_loaded_untagged_and_no_carrier(shipper: ShipperRunner, lab: Lab) -> None:
    """The connection dies while the target's final load runs: that load completes there all the same and the
    image stays (shipper does not roll back what the rerun needs), the carriers go (the image holds their layers),
    the tag is not set (shipper never checked the image); the rerun sends nothing and sets the tag."""
    lab.load_images("a", [RESUMED])
    remove(lab, "b", RESUMED.name, image_id(RESUMED))
    args = ("move", RESUMED.name, "--from", "a", "--to", "b", "-i", str(lab.inventory_path), "--json")

    watcher = when_the_final_load_runs(lab, "b", lambda: kill_ssh_session(lab, "b", "load"))
    first = shipper(*args)
    watcher.join()

    assert first.status != 0
    assert "what arrived whole stays there untagged" in one(first.stdout, "result")["note"]
    wait_for_receivers(lab, "b")
    assert image_id_of(lab, "b", RESUMED.name) is None
    assert image_id_of(lab, "b", image_id(RESUMED)) == image_id(RESUMED)
    assert carrier_ids(lab, "b") == set()
    rerun = shipper(*args)
    assert rerun.status == 0, rerun.stderr
    assert one(rerun.stdout, "result")["bytes_sent"] == 0
    assert image_id_of(lab, "b", RESUMED.name) == image_id(RESUMED)


def test_a_layer_nothing_else_needs_passes_the_receiver_without_being_copied_through_it(shipper: ShipperRunner, lab: Lab) -> None:
    """The receiver hands a layer named by its digest, streamed to its carrier's load and spooled nowhere, from
    its input to the load by the kernel (splice): its own reads (``rchar``) stay far below what its sshd wrote into
    its input. Each byte went through Python twice before (0.5 s of CPU for 500 MB)."""
    image = SyntheticImage("lab/spliced:1", tuple(Layer(16 << 20, f"spliced-{time.time_ns()}-{i}") for i in range(2)))
    lab.load_images("a", [image])
    remove(lab, "b", image.name, image_id(image))
    seen: dict[str, int] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            pid = find_remote_docker(lab, "b", "receive")
            try:
                if pid is not None and not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"docker"):
                    # Its threads' own reads: the process's count takes in its carriers' loads once they end.
                    reads = sum(int(dict(line.split(": ") for line in (task / "io").read_text().splitlines())["rchar"]) for task in Path(f"/proc/{pid}/task").iterdir())
                    writes = dict(line.split(": ") for line in Path(f"/proc/{sshd_of(pid)}/io").read_text().splitlines())
                    seen["rchar"], seen["fed"] = reads, int(writes["wchar"])
            except (OSError, ValueError, IndexError, KeyError):
                pass
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = shipper("move", image.name, "--from", "a", "--to", "b", "-i", str(lab.inventory_path), "--compress", "none")
    finally:
        stop.set()
        watcher.join()

    assert result.status == 0, result.stderr
    assert image_id_of(lab, "b", image.name) == image_id(image)
    total = sum(layer.size for layer in image.layers)
    assert seen["fed"] > total // 2, seen  # seen while the stream ran
    assert seen["rchar"] < seen["fed"] // 8, seen


def test_where_a_docker_context_decides_the_receiver_loads_through_the_docker_cli(shipper: ShipperRunner, lab: Lab) -> None:
    """The receiver loads on the engine's socket itself only where it knows the docker CLI would use that socket;
    a user whose docker config names a current context gets the CLI, which reads contexts (here the default one,
    so DOCKER_HOST still decides), and the image arrives all the same."""
    image = SyntheticImage("lab/context:1", tuple(Layer(8 << 20, f"context-{time.time_ns()}-{i}") for i in range(2)))
    lab.load_images("a", [image])
    remove(lab, "b", image.name, image_id(image))
    config = lab.sshd("b").dir / "docker-config" / "config.json"
    before = config.read_text() if config.exists() else None
    config.parent.mkdir(exist_ok=True)
    config.write_text('{"currentContext": "default"}\n')
    socket = f"unix://{lab.engine('b').socket}"
    cli_loads: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            cli_loads.update(pid for pid, argv, env in processes() if env.get("DOCKER_HOST") == socket and argv[:3] == ["docker", "load", "-q"])
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = shipper("move", image.name, "--from", "a", "--to", "b", "-i", str(lab.inventory_path))
    finally:
        stop.set()
        watcher.join()
        if before is None:
            config.unlink()
        else:
            config.write_text(before)

    assert result.status == 0, result.stderr
    assert image_id_of(lab, "b", image.name) == image_id(image)
    assert cli_loads  # the carriers' and the image's loads went through the CLI
