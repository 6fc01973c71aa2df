"""The commit step on a target (transfer/commit.py): what arrived is checked once per attempt, then the tags move.

The engine here is a small in-memory one (images by ID, tags, a count of how
often its image list is read): the logic under test decides what to ask an
engine, not how an engine answers, which the integration tests prove on real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shipper.engine.info import ImageDetails, ImageSummary
from shipper.errors import Origin
from shipper.inventory.model import EngineEndpoint, Host, SSHSettings
from shipper.transfer.commit import finish_target
from shipper.transfer.plan import TargetPlan
from shipper.ops.move_recovery import merge, resend_in_full
from shipper.transfer import Delivery
from shipper.progress import NullReporter

IMAGE = "sha256:" + "1" * 64
LAYERS = ("sha256:" + "a" * 64, "sha256:" + "b" * 64)


@dataclass
class MemoryEngine:
    images_by_id: dict[str, ImageDetails] = field(default_factory=dict)
    listings: int = 0

    def images(self) -> list[ImageSummary]:
        self.listings += 1
        return [ImageSummary(d.id, d.tags, (), d.size, 0) for d in self.images_by_id.values()]

    def inspect_image(self, reference: str) -> ImageDetails | None:
        return self.images_by_id.get(reference) or next((d for d in self.images_by_id.values() if reference in d.tags), None)

    def tag(self, image_id: str, name: str) -> None:
        details = self.images_by_id[image_id]
        self.images_by_id[image_id] = ImageDetails(details.id, (*details.tags, name), details.size, details.layers, details.architecture, details.os)


@dataclass
class MemoryPool:
    engine: MemoryEngine

    def get(self, host: Host) -> MemoryEngine:
        return self.engine


def target(store: str = "containerd") -> TargetPlan:
    host = Host("b", (), {}, SSHSettings("b", "b"), EngineEndpoint("unix:///b.sock", "unix"), Origin("hosts.yml", 1))
    return TargetPlan(host, "send", send_ids=(IMAGE,), tags=(("app:1", IMAGE),), skip_layers=frozenset(LAYERS[:1]), store=store)


def test_a_thin_containerd_target_has_its_arrival_checked_once_before_its_tags_move() -> None:
    """The check for "did the thin load leave the image incomplete?" and the check before tagging are the
    same check on the same attempt: the target's image list is read once, not once for each."""
    engine = MemoryEngine({IMAGE: ImageDetails(IMAGE, (), 10, LAYERS, "amd64", "linux")})
    pool = MemoryPool(engine)
    delivery = Delivery("host-to-host", sent={"b": 10}, errors={"b": None})
    planned = target()

    assert resend_in_full([planned], delivery, pool, {IMAGE: LAYERS}, {}) is None  # type: ignore[arg-type]
    result = finish_target(planned, delivery, 0.0, NullReporter(), pool, {IMAGE: LAYERS})  # type: ignore[arg-type]

    assert result.status == "moved", result.error
    assert engine.listings == 1
    assert engine.inspect_image("app:1") is not None


def test_a_second_attempt_is_checked_anew() -> None:
    """A target sent again (its first load made an image without layers) is judged by the second attempt."""
    incomplete = ImageDetails(IMAGE, (), 10, (), "amd64", "linux")
    engine = MemoryEngine({IMAGE: incomplete})
    pool = MemoryPool(engine)
    delivery = Delivery("host-to-host", sent={"b": 10}, errors={"b": None})
    planned = target()

    retry = resend_in_full([planned], delivery, pool, {IMAGE: LAYERS}, {})  # type: ignore[arg-type]
    assert retry is not None and retry.targets[0].skip_layers == frozenset()  # the second plan: every layer
    engine.images_by_id[IMAGE] = ImageDetails(IMAGE, (), 10, LAYERS, "amd64", "linux")  # the whole stream completes it
    merge(delivery, Delivery("host-to-host", sent={"b": 20}, errors={"b": None}), retry)
    result = finish_target(planned, delivery, 0.0, NullReporter(), pool, {IMAGE: LAYERS})  # type: ignore[arg-type]

    assert result.status == "moved", result.error
    assert "sent again with every layer" in result.note
    assert engine.listings == 2  # one check per attempt
