"""On a slow link (traffic to the target held to 40 Mbit/s with tc on loopback), compression pays:
auto compresses what shrinks once the link shows itself slow, and the image arrives identical."""

from __future__ import annotations

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
