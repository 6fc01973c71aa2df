"""Only the missing layers cross: a target holding an image's base gets the rest,
and the image it ends up with is the one a full send gives (ID, layers, tags, it runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipper.inventory import load_inventory, select
from shipper.lab import Lab, Layer, SyntheticImage, busybox_image, image_id
from shipper.ops.move_plan import plan_move
from shipper.ops.move_run import run_move
from tests.conftest import ShipperRunner, one
from tests.integration.helpers import file_in_store, flip_byte, image_id_of, layers_of, remove

BASE = SyntheticImage("lab/thin-base:1", (Layer(6 << 20, "thin-base-0"), Layer(6 << 20, "thin-base-1", "text")))
# On top of the base: a small layer of its own, then busybox (so it runs).
APP = SyntheticImage("lab/thin-app:1", (*BASE.layers, Layer(256 << 10, "thin-app")), cmd=("echo", "thin app runs"), files=busybox_image().files)
TAR_OVERHEAD = 64 << 10  # headers, busybox's applet links, config, manifest
MISSING = (256 << 10) + Path("/bin/busybox").stat().st_size  # the two layers the base lacks, in content bytes
FULL = (12 << 20) + MISSING


@pytest.fixture(scope="module")
def on_a(lab: Lab) -> Lab:
    lab.load_images("a", [APP, BASE])
    return lab


def base_only_on(lab: Lab, hosts: str) -> None:
    """``hosts`` hold BASE and nothing of APP's own."""
    remove(lab, hosts, APP.name, image_id(APP))
    for host in hosts.split(","):
        lab.load_images(host, [BASE])


def assert_arrived_whole(lab: Lab, host: str) -> None:
    assert image_id_of(lab, host, APP.name) == image_id(APP)
    assert layers_of(lab, host, APP.name) == layers_of(lab, "a", APP.name)
    assert lab.docker(host, "run", "--rm", "--network", "none", APP.name).stdout == "thin app runs\n"


def events(stdout: str, kind: str) -> dict[str, dict]:
    found = [json.loads(line) for line in stdout.splitlines()]
    return {e.get("host", ""): e for e in found if e["event"] == kind}


ROUTES = [
    pytest.param(["--via", "ssh"], "store", id="host-to-host, layers read from the source's store"),
    pytest.param(["--via", "ssh", "--no-store-read"], "save", id="host-to-host, docker save filtered on the source"),
    pytest.param(["--via", "relay"], "save", id="relay"),
    pytest.param(["--via", "direct"], "save", id="direct"),
]


@pytest.mark.parametrize(("how", "read"), ROUTES)
def test_an_image_whose_base_the_target_holds_arrives_identical_with_only_the_missing_layers_sent(
    shipper: ShipperRunner, on_a: Lab, ssh_inventory: str, how: list[str], read: str
) -> None:
    base_only_on(on_a, "b")

    result = shipper("move", APP.name, "--from", "a", "--to", "b", *how, "-i", ssh_inventory, "--json")

    assert result.status == 0, result.stderr
    [plan] = [json.loads(line) for line in result.stdout.splitlines() if '"event": "plan"' in line]
    assert plan["targets"][0]["layers"] == {"send": 2, "present": 2}
    outcome = events(result.stdout, "result")["b"]
    assert MISSING < outcome["bytes_sent"] < MISSING * 1.02 + TAR_OVERHEAD
    assert outcome["source_read"] == read
    assert_arrived_whole(on_a, "b")
    assert image_id_of(on_a, "b", BASE.name) == image_id(BASE)  # what it held is untouched


def test_each_target_of_a_group_gets_only_what_it_lacks(shipper: ShipperRunner, on_a: Lab, ssh_inventory: str) -> None:
    base_only_on(on_a, "b")
    remove(on_a, "c", APP.name, BASE.name, image_id(APP), image_id(BASE))

    result = shipper("move", APP.name, "--from", "a", "--to", "b,c", "-i", ssh_inventory, "--json")

    assert result.status == 0, result.stderr
    sent = {host: e["bytes_sent"] for host, e in events(result.stdout, "result").items()}
    assert sent["b"] < MISSING * 1.02 + TAR_OVERHEAD
    assert FULL < sent["c"] < FULL * 1.02 + TAR_OVERHEAD
    assert_arrived_whole(on_a, "b")
    assert_arrived_whole(on_a, "c")


def test_the_plan_says_per_target_how_many_layers_and_bytes_cross_and_how_many_are_there(
    shipper: ShipperRunner, on_a: Lab, ssh_inventory: str
) -> None:
    base_only_on(on_a, "b")
    remove(on_a, "c", APP.name, BASE.name, image_id(APP), image_id(BASE))

    text = shipper("move", APP.name, "--from", "a", "--to", "b,c", "--dry-run", "-i", ssh_inventory)
    as_json = shipper("move", APP.name, "--from", "a", "--to", "b,c", "--dry-run", "--json", "-i", ssh_inventory)

    assert text.status == 0 and as_json.status == 0
    rows = {line.split()[0]: line for line in text.stdout.splitlines() if line.startswith(("b ", "c "))}
    assert "2 to send, 2 there (12.6 MB)" in rows["b"]
    assert "4 to send" in rows["c"] and "there" not in rows["c"]
    targets = {t["host"]: t for t in one(as_json.stdout, "plan")["targets"]}
    assert targets["b"]["layers"] == {"send": 2, "present": 2} and targets["b"]["present_bytes"] == 12 << 20
    assert targets["c"]["layers"] == {"send": 4, "present": 0}
    assert targets["b"]["bytes_estimate"] < 2 * MISSING < FULL <= targets["c"]["bytes_estimate"]
    assert image_id_of(on_a, "b", image_id(APP)) is None and image_id_of(on_a, "c", image_id(APP)) is None


@pytest.mark.parametrize("via", ["ssh", "relay"])
def test_a_base_removed_from_the_target_between_plan_and_send_is_sent_again_in_full(on_a: Lab, via: str) -> None:
    base_only_on(on_a, "b")
    inventory = load_inventory(on_a.inventory_path)
    plan = plan_move(inventory.host("a"), select(inventory, "b"), [APP.name], via)  # type: ignore[arg-type]
    assert plan.targets[0].skip_layers
    remove(on_a, "b", BASE.name)  # its layers go with it: nothing else uses them

    [result] = run_move(plan)

    assert result.status == "moved", result.error
    assert "sent again with every layer" in result.note
    assert result.bytes_sent > FULL
    assert_arrived_whole(on_a, "b")


def test_a_corrupt_layer_in_the_source_store_is_refused_by_the_targets_load_and_no_target_changes(
    shipper: ShipperRunner, on_a: Lab, ssh_inventory: str
) -> None:
    base_only_on(on_a, "b")
    layer = corrupt_app_layer_on_a(on_a)
    try:
        result = shipper("move", APP.name, "--from", "a", "--to", "b", "-i", ssh_inventory)
    finally:
        flip_byte(layer)

    assert result.status != 0
    # Not hashed on the source (the target's load hashes every layer): the target's load refuses it.
    assert "error: a layer read from a (ssh://" in result.stderr and "layer store is not what its image says" in result.stderr
    assert "invalid diffID" in result.stderr and "--no-store-read" in result.stderr
    assert image_id_of(on_a, "b", APP.name) is None and image_id_of(on_a, "b", image_id(APP)) is None
    assert image_id_of(on_a, "b", BASE.name) == image_id(BASE)


def corrupt_app_layer_on_a(lab: Lab) -> Path:
    """Flip a byte of APP's own file in a's overlay2 store; the file's path, to flip it back."""
    path = file_in_store(lab, "a", APP.name, 2, APP.layers[2].path)
    flip_byte(path)
    return path
