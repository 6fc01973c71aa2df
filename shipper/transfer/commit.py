"""The commit step of a move or a bundle load, on each target: check what arrived, then move the tags.

The order on each target is what keeps it whole:

1. the images loaded untagged (the stream's tags were taken out on the way);
2. every image's ID is checked on the target (once per attempt);
3. only then do the tags move, and each is checked to point at its image.

If anything fails before step 3, the target's tags are exactly as they were,
and an image the failed attempt left behind untagged is removed again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

from shipper.engine import Engine
from shipper.engine.info import ImageDetails
from shipper.errors import ConnectionFailed, EngineError, EngineUnreachable, ShipperError
from shipper.engine.pool import EnginePool
from shipper.hostpool import for_each_host
from shipper.transfer.plan import TargetPlan
from shipper.transfer import Delivery
from shipper.progress import Reporter
from shipper.releases import Release
from shipper.releases import check as check_release

Status = Literal["moved", "tagged", "unchanged", "skipped", "failed"]


@dataclass(frozen=True)
class TargetResult:
    host: str
    status: Status
    bytes_sent: int = 0
    seconds: float = 0.0
    error: ShipperError | None = None
    note: str = ""
    route_taken: str = ""  # the route the bytes took: host-to-host, relay, direct, registry, bundle
    source_read: str = ""  # store: read from the source engine's layer store; save: docker save
    bytes_on_wire: int | None = None  # what crossed the link, when compression made it differ from bytes_sent
    round_trips: int | None = None  # requests to the target's engine after connecting (each waits a round trip)
    attempts: int = 1  # with --retry: the attempt this result is from
    bytes_before: int = 0  # with --retry: bytes sent to this target by the attempts before (what a cut cost)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def engine_gone(target: TargetPlan, error: ShipperError, engines: EnginePool) -> ShipperError | None:
    """A load that failed for no clear reason ("unexpected EOF"): is the engine still there?"""
    try:
        engines.get(target.host, check=True)
    except ShipperError:
        return EngineUnreachable(
            f"the engine stopped answering during the move to {target.host.describe()} ({error.message})",
            hint=f"start dockerd on {target.host.name}, then run the same command again",
        )
    return None


def arrival(
    target: TargetPlan, delivery: Delivery | None, engines: EnginePool, layers: dict[str, tuple[str, ...]], contents: dict[str, str] | None,
) -> dict[str, str]:  # fmt: skip
    """source ID -> the ID each sent image has on the target, each checked whole; EngineError when one is
    missing or not whole. Checked once per target and attempt: the outcome is kept in the delivery (a
    second attempt is a new delivery), since each check lists and inspects the target's images."""
    name = target.host.name
    checked = delivery.arrivals.get(name) if delivery is not None else None
    if checked is None:
        try:
            checked = _arrived(target, engines.get(target.host), layers, delivery.local_ids.get(name) if delivery else None, contents)
        except ShipperError as exc:
            checked = exc
        if delivery is not None:
            delivery.arrivals[name] = checked
    if isinstance(checked, ShipperError):
        raise checked
    return dict(checked)


def incomplete(
    target: TargetPlan, delivery: Delivery, engines: EnginePool, layers: dict[str, tuple[str, ...]], contents: dict[str, str]
) -> bool:  # fmt: skip
    try:
        arrival(target, delivery, engines, layers, contents)
    except ShipperError:
        return True
    return False


def _commit(
    target: TargetPlan, delivery: Delivery | None, engines: EnginePool, layers: dict[str, tuple[str, ...]], contents: dict[str, str] | None,
    reporter: Reporter, releases: Mapping[str, Release] | None = None,
) -> None:  # fmt: skip
    """Check every sent image is on the target, whole (and, with ``releases``, the signed release), then point the
    tags, then check them."""
    engine = engines.get(target.host)
    reporter.phase(target.host.name, "checking")
    local = arrival(target, delivery, engines, layers, contents)
    for name, image_id in target.tags if releases else ():
        release = releases.get(image_id) if releases else None
        there = engine.inspect_image(local.get(image_id, image_id)) if release is not None else None
        if release is not None:
            if there is None:
                raise EngineError(f"image {image_id} is missing on {target.host.describe()} before tagging")
            config = there.id if target.store == "classic" else None  # the containerd store names images by manifest
            check_release(release, f"for {name} on {target.host.describe()}", config, there.layers, there.content, None)
    reporter.phase(target.host.name, "tagging")
    wanted = [(local.get(image_id, image_id), name) for name, image_id in target.tags]
    for (image_id, name), now in zip(wanted, engine.tag_and_inspect(wanted)):  # one round trip on a far link
        if now is None or now.id != image_id:
            raise EngineError(f"{name} on {target.host.describe()} does not point at {image_id} after tagging")


def _arrived(
    target: TargetPlan, engine: Engine, layers: dict[str, tuple[str, ...]], arrived: dict[str, str] | None,
    contents: dict[str, str] | None,
) -> dict[str, str]:  # fmt: skip
    """source ID -> the ID each sent image has on the target, each checked whole (the source's layers);
    EngineError when one is missing or not whole."""
    local = {**target.aliases, **(arrived or {})}  # source ID -> the ID the image has there (they differ in the containerd store)
    listed: set[str] | None = None  # the engine's image list, read once if needed
    sent = list(target.send_ids)
    found = engine.inspect_images([local.get(image_id, image_id) for image_id in sent])  # one round trip on a far link
    for image_id, there in zip(sent, found):
        details = (
            there
            or _by_content(engine, (contents or {}).get(image_id))
            or _new_with_layers(engine, layers.get(image_id), target.held_before)
        )  # fmt: skip
        if details is None:
            raise EngineError(f"image {image_id} is missing on {target.host.describe()} after the load")
        if image_id in layers and target.store == "containerd":
            listed = listed if listed is not None else {image.id for image in engine.images()}
            if (layers[image_id] and not details.layers) or details.id not in listed:
                # 28.5 then inspects it without platform or layers; 26.1 inspects it whole but leaves it out of the
                # image list, and its docker save writes an archive without its config and layers (exit status 0).
                raise EngineError(
                    f"image {image_id} arrived on {target.host.describe()} incomplete: its containerd image store lacks the "
                    "content of layers it already held unpacked, so the engine cannot list, save or push it "
                    "(Docker's pull skips such layers: moby/moby#49784)",
                    hint=f"move it to {target.host.name} --via ssh (only the layers it lacks cross, and it arrives whole)",
                )  # fmt: skip
        if image_id in layers and details.layers != layers[image_id]:
            raise EngineError(f"image {image_id} on {target.host.describe()} does not have the source's layers after the load")
        local[image_id] = details.id
    return local


def _by_content(engine: Engine, content: str | None) -> ImageDetails | None:
    """The image a load made, found by its content where its ID is not the source's (containerd store: a manifest
    digest; a source there: its ID is not the config digest a classic target gives it). Untagged ones first."""
    if not content:
        return None
    found = [d for d in (engine.inspect_image(i.id) for i in engine.images()) if d is not None and d.content == content]
    found.sort(key=lambda d: bool(d.tags))
    return found[0] if found else None


def _new_with_layers(engine: Engine, layers: tuple[str, ...] | None, held_before: frozenset[str]) -> ImageDetails | None:
    """Where no content key is known (a bundle): the one untagged image with these layers that the target did not
    hold before the load. Ambiguity is no match: the check then fails and nothing is tagged."""
    if not layers:
        return None
    found = [
        d for d in (engine.inspect_image(i.id) for i in engine.images() if i.id not in held_before and not i.tags)
        if d is not None and d.layers == layers
    ]  # fmt: skip
    return found[0] if len(found) == 1 else None


def untag(target: TargetPlan, engines: EnginePool, references: list[str]) -> str:
    """Take the registry's digest references off the target once its own tags are in place."""
    try:
        engine = engines.get(target.host)
        for reference in references:
            engine.untag(reference)
    except ShipperError as exc:
        return f"left the reference in place: {exc.message}"
    return ""


def drop_carriers(target: TargetPlan, engines: EnginePool) -> str:
    """Remove the carriers an interrupted move left whose layers the target's images now hold: a resumed move's
    receiver removes its own, but a move that found the image there (unchanged, or only tags), or pulled it from a
    registry, would leave them for ever. A note of what was done, or why not."""
    if not target.carriers:
        return ""
    try:
        engine = engines.get(target.host)
        there = engine.inspect_images(list(target.carriers))
        found = [image_id for image_id, details in zip(target.carriers, there) if details is not None and details.carrier]
        for image_id in found:
            engine.remove_image(image_id)
    except ShipperError as exc:
        return f"left the carriers of an interrupted move in place: {exc.message}"
    return f"removed {len(found)} carrier(s) an interrupted move left (the image holds their layers)" if found else ""


def rollback(target: TargetPlan, engines: EnginePool) -> str:
    """Remove untagged images a failed attempt left behind; say what could not be done."""
    try:
        engine = engines.get(target.host)
        for image_id in target.send_ids:
            if image_id in target.present_ids:
                continue
            details = engine.inspect_image(image_id)
            if details is not None and not details.tags:
                engine.remove_image(image_id)
    except ShipperError as exc:
        return f"could not check for leftovers: {exc.message}"
    return ""


def finish_target(
    target: TargetPlan, delivery: Delivery | None, started: float, reporter: Reporter, engines: EnginePool,
    layers: dict[str, tuple[str, ...]], contents: dict[str, str] | None = None, releases: Mapping[str, Release] | None = None,
) -> TargetResult:  # fmt: skip
    name = target.host.name
    sent = delivery.sent.get(name, 0) if delivery else 0
    error = delivery.errors.get(name) if delivery else None
    route_taken, note = (delivery.route_taken, delivery.note) if delivery else ("", "")
    read = delivery.source_read if delivery else ""
    if delivery is not None and name in delivery.target_notes:
        note = "; ".join(x for x in (note, delivery.target_notes[name]) if x)
    if error is None:
        try:
            _commit(target, delivery, engines, layers, contents, reporter, releases)
        except ShipperError as exc:
            error = exc
    if error is None and delivery is not None and delivery.untag_after.get(name):
        note = "; ".join(x for x in (note, untag(target, engines, delivery.untag_after[name])) if x)
    if error is not None and not isinstance(error, ConnectionFailed):
        error = engine_gone(target, error, engines) or error
    elapsed = time.monotonic() - started
    if error is not None:
        reporter.finish(name, "failed")
        if isinstance(error, ConnectionFailed) and delivery is not None and name in delivery.resumable:
            # The link dropped: the receiver there goes on alone and keeps what arrived whole, carriers or, once
            # the stream was in, the image itself (untagged). Removing it would throw away what the rerun needs.
            leftover = "what arrived whole stays there untagged: the next move sends only the rest"
        else:
            leftover = rollback(target, engines) if target.send_ids else ""
        if delivery is not None and delivery.untag_after.get(name):  # the registry's references a pull added
            leftover = "; ".join(x for x in (leftover, untag(target, engines, delivery.untag_after[name])) if x)
        return TargetResult(name, "failed", sent, elapsed, error, "; ".join(x for x in (note, leftover) if x), route_taken, read)
    note = "; ".join(x for x in (note, drop_carriers(target, engines)) if x)
    status: Status = "moved" if target.action == "send" else "tagged"
    reporter.finish(name, status)
    wire = delivery.wire.get(name) if delivery is not None else None
    return TargetResult(name, status, sent, elapsed, note=note, route_taken=route_taken, source_read=read, bytes_on_wire=wire)


def static_result(target: TargetPlan, engines: EnginePool | None = None) -> TargetResult:
    """The result of a target the plan left as it was (with ``engines``: its leftover carriers removed)."""
    if target.action == "failed":
        return TargetResult(target.host.name, "failed", error=target.error)
    if target.action == "skip":
        return TargetResult(target.host.name, "skipped", note=target.reason)
    dropped = drop_carriers(target, engines) if engines is not None else ""
    return TargetResult(target.host.name, "unchanged", note="; ".join(x for x in (target.reason, dropped) if x))


def results_in_order(targets: Sequence[TargetPlan], finished: Mapping[str, TargetResult | None], engines: EnginePool) -> list[TargetResult]:
    """One result per target, in the plan's order: ``finished`` ones, and the rest as the plan left them, an
    unchanged target's leftover carriers removed meanwhile (all such targets at once)."""
    tidied = {t.host.name: t for t in targets if t.action == "unchanged" and t.carriers}
    untouched = {o.host.name: o.value for o in for_each_host([t.host for t in tidied.values()], lambda h: static_result(tidied[h.name], engines))}
    return [finished.get(t.host.name) or untouched.get(t.host.name) or static_result(t) for t in targets]
