"""The commit step on a target (transfer/commit.py), on a real engine: what arrived is checked once per
attempt (each check lists the engine's images), then the tags move, and a second attempt is judged anew.

The containerd store's check (the image must be in the engine's list) is the one run here, on the lab's
engine: ``store`` is what the plan says of the target, and the check asks the real engine either way.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import pytest

from shipper.engine.pool import EnginePool
from shipper.inventory import load_inventory
from shipper.lab import Lab, Layer, SyntheticImage, image_id
from shipper.progress import NullReporter
from shipper.transfer import Delivery
from shipper.transfer.commit import finish_target
from shipper.transfer.plan import TargetPlan
from shipper.ops.move_recovery import merge, resend_in_full
from tests.integration.helpers import image_id_of, remove

APP = SyntheticImage("lab/commit:1", (Layer(256 << 10, "commit-base"), Layer(64 << 10, "commit-top")))
NEW_TAG = "lab/commit:2"


def counting_listings(pool: EnginePool, host: Any) -> Callable[[], int]:
    """Count the target engine's image-list reads (the real engine answers; only the calls are counted)."""
    engine = pool.get(host)
    calls = [0]
    original = engine.images

    def images() -> Any:
        calls[0] += 1
        return original()

    engine.images = images  # type: ignore[method-assign]
    return lambda: calls[0]


@pytest.fixture
def target(lab: Lab) -> tuple[Any, TargetPlan, dict[str, tuple[str, ...]]]:
    host = load_inventory(lab.local_inventory_path).host("b")
    remove(lab, "b", APP.name, NEW_TAG, image_id(APP))
    with EnginePool() as pool:
        lab.load_images("a", [APP])
        layers = {image_id(APP): pool.get(load_inventory(lab.local_inventory_path).host("a")).inspect_image(image_id(APP)).layers}  # type: ignore[union-attr]
    planned = TargetPlan(
        host, "send", send_ids=(image_id(APP),), tags=((NEW_TAG, image_id(APP)),), skip_layers=frozenset(layers[image_id(APP)][:1]),
        store="containerd",
    )  # fmt: skip
    return host, planned, layers


def test_a_thin_target_has_its_arrival_checked_once_before_its_tags_move(lab: Lab, target: Any) -> None:
    """"Did the thin load leave the image incomplete?" and the check before tagging are one check on one attempt."""
    host, planned, layers = target
    lab.load_images("b", [APP])  # the delivery's load, done
    delivery = Delivery("host-to-host", sent={"b": 1}, errors={"b": None})
    with EnginePool() as pool:
        listings = counting_listings(pool, host)

        assert resend_in_full([planned], delivery, pool, layers, {}) is None
        result = finish_target(planned, delivery, 0.0, NullReporter(), pool, layers)

        assert listings() == 1
    assert result.status == "moved", result.error
    assert image_id_of(lab, "b", NEW_TAG) == image_id(APP)


def test_a_second_attempt_is_checked_anew(lab: Lab, target: Any) -> None:
    """A first attempt that left nothing is sent again whole; the target is judged by the second attempt."""
    host, planned, layers = target
    delivery = Delivery("host-to-host", sent={"b": 1}, errors={"b": None})  # the load "succeeded", yet nothing is there
    with EnginePool() as pool:
        listings = counting_listings(pool, host)

        retry = resend_in_full([planned], delivery, pool, layers, {})
        assert retry is not None and retry.targets == [replace(planned, skip_layers=frozenset())]
        lab.load_images("b", [APP])  # the second delivery's load, whole
        merge(delivery, Delivery("host-to-host", sent={"b": 2}, errors={"b": None}), retry)
        result = finish_target(planned, delivery, 0.0, NullReporter(), pool, layers)

        assert listings() == 2  # one check per attempt
    assert result.status == "moved", result.error
    assert "sent again with every layer" in result.note
    assert image_id_of(lab, "b", NEW_TAG) == image_id(APP)
    assert delivery.sent["b"] == 3
