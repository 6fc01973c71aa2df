"""On a slow link (traffic to the target held to 40 Mbit/s with tc on loopback), compression pays:
auto compresses what shrinks once the link shows itself slow, and the image arrives identical."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from shipper.lab import Lab, Layer, SyntheticImage, image_id
from shipper.lab.shaping import shaped
from tests.conftest import ShipperRunner, one
from tests.integration.helpers import image_id_of, remove

TEXTUAL = SyntheticImage("lab/over-a-slow-link:1", (Layer(24 << 20, "slow-text", "text"), Layer(2 << 20, "slow-random")))


@pytest.fixture
def slow_link_to_b(lab: Lab) -> Iterator[Lab]:
    lab.load_images("a", [TEXTUAL])
    remove(lab, "b", TEXTUAL.name, image_id(TEXTUAL))
    with shaped({lab.address("b"): "40mbit"}):
        yield lab


def test_auto_compression_pays_on_a_slow_link_and_the_image_arrives_identical(shipper: ShipperRunner, slow_link_to_b: Lab, ssh_inventory: str) -> None:
    result = shipper("move", TEXTUAL.name, "--from", "a", "--to", "b", "-i", ssh_inventory, "--json")

    assert result.status == 0, result.stderr
    moved = one(result.stdout, "result")
    assert moved["route"] == "host-to-host"
    assert moved["bytes_on_wire"] < moved["bytes_sent"] * 0.6, moved  # the first MiBs go raw, until the link is known slow
    assert image_id_of(slow_link_to_b, "b", TEXTUAL.name) == image_id(TEXTUAL)
    layers = slow_link_to_b.docker("b", "image", "inspect", "-f", "{{json .RootFS.Layers}}", TEXTUAL.name).stdout
    assert layers.count("sha256:") == 2


CUT = SyntheticImage("lab/cut-link:1", tuple(Layer(6 << 20, f"cut-link-{i}") for i in range(6)))  # 36 MiB, random


def test_a_link_dropped_mid_move_keeps_the_tag_and_the_rerun_sends_only_the_rest_on_the_link(
    shipper: ShipperRunner, lab: Lab, ssh_inventory: str
) -> None:  # fmt: skip
    """Bytes counted by tc on the target's link: after a cut at 60% (3.6 of 6 layers across), the rerun puts at most
    the 3 layers that had not arrived whole on it (half the image, and the link's own headers)."""
    from tests.integration.test_move_faults import kill_ssh_session, receiver_running

    lab.load_images("a", [CUT])
    remove(lab, "b", CUT.name, image_id(CUT))
    size = sum(layer.size for layer in CUT.layers)
    argv = [sys.executable, "-m", "shipper", "move", CUT.name, "--from", "a", "--to", "b", "-i", ssh_inventory, "--json"]
    with shaped({lab.address("b"): "100mbit"}) as links:
        start = links.sent(lab.address("b"))
        first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while first.poll() is None and links.sent(lab.address("b")) - start < size * 0.6:
            time.sleep(0.02)
        kill_ssh_session(lab, "b", "receive")
        first.communicate()
        deadline = time.monotonic() + 60
        while receiver_running(lab, "b") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert image_id_of(lab, "b", CUT.name) is None  # the tag never points at anything new
        before_rerun = links.sent(lab.address("b"))
        rerun = shipper("move", CUT.name, "--from", "a", "--to", "b", "-i", ssh_inventory, "--json")
        on_the_link = links.sent(lab.address("b")) - before_rerun

    assert first.returncode != 0
    assert rerun.status == 0, rerun.stderr
    assert one(rerun.stdout, "plan")["targets"][0]["resumed_layers"] >= 2
    assert on_the_link <= size * 0.55, (on_the_link, size)
    assert image_id_of(lab, "b", CUT.name) == image_id(CUT)
