"""Carry out a move plan: one save, streamed to every target that needs it, then tags.

The order on each target is what keeps it whole:

1. the images load untagged (the stream's tags were taken out on the way);
2. every image's ID is checked on the target;
3. only then do the tags move, and each is checked to point at its image.

If anything fails before step 3, the target's tags are exactly as they were,
and an image the failed attempt left behind untagged is removed again.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, replace
from typing import Callable, Literal, Sequence

from shipper.archive.fanout import ended_early, pump
from shipper.archive.savestream import ArchiveError
from shipper.engine import Engine, connect
from shipper.engine.info import ImageDetails
from shipper.errors import ConnectionFailed, EngineError, EngineUnreachable, ShipperError
from shipper.ops.engines import EnginePool
from shipper.hostpool import for_each_host
from shipper.imageref import parse
from shipper.inventory.model import Host
from shipper.ops.move_plan import MovePlan, TargetPlan, Via, choose_route, plan_move, streams_oci, target_view, thin_skip
from shipper.ops.move_registry import RegistryRoute, pull_everywhere, push_images
from shipper.ops.streams import Delivery, SourceProgram, host_to_host, make_sink, make_source, sink_error
from shipper.progress import NullReporter, Reporter

Status = Literal["moved", "tagged", "unchanged", "skipped", "failed"]


@dataclass(frozen=True)
class TargetResult:
    host: str
    status: Status
    bytes_sent: int = 0
    seconds: float = 0.0
    error: ShipperError | None = None
    note: str = ""
    path: str = ""  # how the bytes went: host-to-host, relay, direct
    source_read: str = ""  # store: read from the source engine's layer store; save: docker save

    @property
    def ok(self) -> bool:
        return self.status != "failed"


class SourceFailed(ShipperError):
    """The source stream could not be read to its end, or was not sound."""


def _through_here(plan: MovePlan, senders: Sequence[TargetPlan], reporter: Reporter) -> Delivery:
    """Relay (ssh) or direct: the source's stream passes through this process."""
    sinks = {t.host.name: make_sink(plan.route, t.host, t.skip_layers) for t in senders}
    source = make_source(plan.route, plan.source, plan.send_ids)
    try:
        progress = lambda sink: reporter.advance(sink.name, sink.sent)  # noqa: E731
        pump(source.chunks(), list(sinks.values()), plan.check_ids, progress, layers=plan.layers)
    except (ArchiveError, ShipperError) as exc:
        source.abort()
        # The source's own words (docker save's error) explain a broken stream best.
        error = source.failure() or SourceFailed(f"the stream from {plan.source.describe()} is not sound: {exc}")
        error = _explain_source_failure(plan, error)
        for sink in sinks.values():
            sink.abort()
        return Delivery(_path(plan), sent={n: s.sent for n, s in sinks.items()}, errors={n: error for n in sinks})
    if ended_early(list(sinks.values())):
        source.abort()  # every target quit: stop the save, or it blocks on a pipe nobody reads
        failure = None
    else:
        failure = source.failure()
    for sink in sinks.values():
        sink.finish()
    delivery = Delivery(_path(plan), sent={n: s.sent for n, s in sinks.items()})
    for target in senders:
        delivery.errors[target.host.name] = failure or sink_error(target.host, sinks[target.host.name])
    return delivery


def _path(plan: MovePlan) -> str:
    return "relay" if plan.route == "ssh" else "direct"


def _through_registry(plan: MovePlan, senders: Sequence[TargetPlan], reporter: Reporter, engines: EnginePool) -> Delivery:
    """The source's engine pushes, each target's engine pulls."""
    assert plan.registry is not None
    names = [(img.name or img.id, img.id) for img in plan.images if img.id in plan.send_ids]
    reporter.start(plan.source.name, sum(img.size for img in plan.images if img.id in plan.send_ids))
    try:
        pushed = push_images(plan.source, names, plan.registry, reporter, engines)
    except ShipperError as exc:
        reporter.finish(plan.source.name, "failed")
        error = _explain_source_failure(plan, exc)
        return Delivery("registry", source_read="push", errors={t.host.name: error for t in senders})
    reporter.finish(plan.source.name, "pushed")
    delivery = pull_everywhere([t.host for t in senders], pushed, plan.registry, reporter, engines)
    delivery.note = "; ".join(p.note for p in pushed if p.note)
    return delivery


def _deliver(
    plan: MovePlan, senders: Sequence[TargetPlan], reporter: Reporter, program: SourceProgram | None, engines: EnginePool
) -> Delivery:  # fmt: skip
    """Host to host when planned and available, else through this machine."""
    if plan.route == "registry":
        if program is not None:
            program.cancel()
        return _through_registry(plan, senders, reporter, engines)
    if plan.host_to_host:
        keys = {t.host.name: t.host_key for t in senders if t.host_key}
        hosts = [t.host for t in senders]
        skips = {t.host.name: t.skip_layers for t in senders}
        if program is not None:
            attempt = program.send(hosts, keys, plan.layers, reporter, skips, plan.check_ids)
        else:
            attempt = host_to_host(plan.source, hosts, keys, plan.layers, reporter, skips, plan.store_read, plan.check_ids)
        if attempt.available:
            explained: dict[int, ShipperError] = {}  # one source error is shared by every target: explain it once
            for name, error in attempt.errors.items():
                if error is not None:
                    attempt.errors[name] = explained.setdefault(id(error), _explain_source_failure(plan, error))
            return attempt
        delivery = _through_here(plan, senders, reporter)
        delivery.note = f"host to host unavailable ({attempt.reason}): sent through this machine"
        return delivery
    return _through_here(plan, senders, reporter)


def _explain_source_failure(plan: MovePlan, error: ShipperError) -> ShipperError:
    """The engine's words for a save of a removed image are cryptic; say it plainly. So is an archive
    a containerd store wrote without an image's content."""
    if plan.source_store == "containerd" and "which the archive does not hold" in error.message:
        names = ", ".join(img.name or img.id for img in plan.images if img.id in plan.send_ids)
        return EngineError(
            f"docker save on {plan.source.describe()} left out the content of {names} ({error.message.rsplit(': ', 1)[-1]}): "
            "its containerd image store lacks it (pulled while its layers were already unpacked there: moby/moby#49784)",
            hint=f"remove it on {plan.source.name} and pull it again, or bring it there whole with shipper move --via ssh",
        )  # fmt: skip
    try:
        with connect(plan.source) as engine:  # rarely needed: not worth keeping a connection for
            gone = [img for img in plan.images if img.id in plan.send_ids and engine.inspect_image(img.id) is None]
    except ShipperError:
        return error
    if not gone:
        return error
    names = ", ".join(img.name or img.id for img in gone)
    return EngineError(
        f"save on {plan.source.describe()} failed: {names} was removed from it during the move",
        hint=f"put the image back on {plan.source.name} (build, pull or load it), then run the same command again",
    )


def _engine_gone(target: TargetPlan, error: ShipperError, engines: EnginePool) -> ShipperError | None:
    """A load that failed for no clear reason ("unexpected EOF"): is the engine still there?"""
    try:
        engines.get(target.host)
    except ShipperError:
        return EngineUnreachable(
            f"the engine stopped answering during the move to {target.host.describe()} ({error.message})",
            hint=f"start dockerd on {target.host.name}, then run the same command again",
        )
    return None


def _commit(
    target: TargetPlan, engines: EnginePool, layers: dict[str, tuple[str, ...]], arrived: dict[str, str] | None = None,
    contents: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """Check every sent image is on the target, whole, then point the tags, then check them.
    ``arrived``: source ID -> the ID the delivery saw the image get there; ``contents``: source ID -> content key."""
    engine = engines.get(target.host)
    local = _arrived(target, engine, layers, arrived, contents)
    for name, image_id in target.tags:
        engine.tag(local.get(image_id, image_id), name)
    for name, image_id in target.tags:
        now = engine.inspect_image(name)
        if now is None or now.id != local.get(image_id, image_id):
            raise EngineError(f"{name} on {target.host.describe()} does not point at {image_id} after tagging")


def _arrived(
    target: TargetPlan, engine: Engine, layers: dict[str, tuple[str, ...]], arrived: dict[str, str] | None,
    contents: dict[str, str] | None,
) -> dict[str, str]:  # fmt: skip
    """source ID -> the ID each sent image has on the target, each checked whole (the source's layers);
    EngineError when one is missing or not whole."""
    local = {**target.aliases, **(arrived or {})}  # source ID -> the ID the image has there (they differ in the containerd store)
    listed: set[str] | None = None  # the engine's image list, read once if needed
    for image_id in target.send_ids:
        details = (
            engine.inspect_image(local.get(image_id, image_id))
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


def _untag(target: TargetPlan, engines: EnginePool, references: list[str]) -> str:
    """Take the registry's digest references off the target once its own tags are in place."""
    try:
        engine = engines.get(target.host)
        for reference in references:
            engine.untag(reference)
    except ShipperError as exc:
        return f"left the reference in place: {exc.message}"
    return ""


def _rollback(target: TargetPlan, engines: EnginePool) -> str:
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
    layers: dict[str, tuple[str, ...]], contents: dict[str, str] | None = None,
) -> TargetResult:  # fmt: skip
    name = target.host.name
    sent = delivery.sent.get(name, 0) if delivery else 0
    error = delivery.errors.get(name) if delivery else None
    path, note = (delivery.path, delivery.note) if delivery else ("", "")
    read = delivery.source_read if delivery else ""
    if delivery is not None and name in delivery.target_notes:
        note = "; ".join(x for x in (note, delivery.target_notes[name]) if x)
    if error is None:
        try:
            _commit(target, engines, layers, delivery.local_ids.get(name) if delivery else None, contents)
        except ShipperError as exc:
            error = exc
    if error is None and delivery is not None and delivery.untag_after.get(name):
        note = "; ".join(x for x in (note, _untag(target, engines, delivery.untag_after[name])) if x)
    if error is not None and not isinstance(error, ConnectionFailed):
        error = _engine_gone(target, error, engines) or error
    elapsed = time.monotonic() - started
    if error is not None:
        reporter.finish(name, "failed")
        leftover = _rollback(target, engines) if target.send_ids else ""
        if delivery is not None and delivery.untag_after.get(name):  # the registry's references a pull added
            leftover = "; ".join(x for x in (leftover, _untag(target, engines, delivery.untag_after[name])) if x)
        return TargetResult(name, "failed", sent, elapsed, error, "; ".join(x for x in (note, leftover) if x), path, read)
    status: Status = "moved" if target.action == "send" else "tagged"
    reporter.finish(name, status)
    return TargetResult(name, status, sent, elapsed, note=note, path=path, source_read=read)


def run_move(
    plan: MovePlan, reporter: Reporter | None = None, engines: EnginePool | None = None, program: SourceProgram | None = None
) -> list[TargetResult]:
    """Execute ``plan``; one result per target, in the plan's order.

    ``engines``: the connections planning opened, to reuse (else new ones, closed at the end).
    ``program``: the host-to-host program, already started on the source (see MoveSession).
    """
    with contextlib.ExitStack() as stack:
        return _run(plan, reporter or NullReporter(), engines or stack.enter_context(EnginePool()), program)


class MoveSession:
    """Plan, then run, a move, with what both share: engine connections and,
    when the bytes will go host to host, the program on the source, started at
    once so that its SSH login and start-up overlap the planning.

        with MoveSession(source, targets, images, via) as session:
            plan = session.plan()
            results = session.run(plan, reporter)
    """

    def __init__(
        self, source: Host, targets: Sequence[Host], images: Sequence[str], via: Via | None = None, prestart: bool = True,
        store_read: bool = True, registry: RegistryRoute | None = None,
    ) -> None:  # fmt: skip
        self.source, self.targets, self.images, self.via = source, list(targets), list(images), via
        self.store_read, self.registry = store_read, registry
        self.engines = EnginePool()
        self.program: SourceProgram | None = None
        others = [t for t in self.targets if t.name != source.name]
        if prestart and others and choose_route(source, others, via, registry)[2]:
            names = [str(parse(i)) for i in self.images]  # checked names only reach the source's command line
            self.program = SourceProgram(source, [k for t in others for k in t.ssh.identity_files], names, store_read)

    def plan(self, force: bool = False) -> MovePlan:
        return plan_move(self.source, self.targets, self.images, self.via, force, self.engines, self.store_read, self.registry)

    def run(self, plan: MovePlan, reporter: Reporter | None = None) -> list[TargetResult]:
        program, self.program = self.program, None
        return run_move(plan, reporter, self.engines, program)

    def __enter__(self) -> "MoveSession":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.program is not None:
            self.program.cancel()
        self.engines.close()


def _run(plan: MovePlan, reporter: Reporter, engines: EnginePool, program: SourceProgram | None) -> list[TargetResult]:
    started = time.monotonic()
    senders = [t for t in plan.targets if t.action == "send"]
    delivery = None
    if senders:
        for target in senders:
            reporter.start(target.host.name, plan.bytes_for(target))
        delivery = _deliver(plan, senders, reporter, program, engines)
        _resend_in_full(plan, senders, delivery, reporter, engines)
        _send_incomplete_pulls_over_ssh(plan, senders, delivery, reporter, engines)
    elif program is not None:
        program.cancel()
    movers = [t for t in plan.targets if t.action in ("send", "tag")]
    by_name = {t.host.name: t for t in movers}
    layers, contents = plan.layers, plan.contents
    outcomes = for_each_host(
        [t.host for t in movers], lambda h: finish_target(by_name[h.name], delivery, started, reporter, engines, layers, contents)
    )
    finished = {o.host.name: o.value for o in outcomes}
    return [finished.get(t.host.name) or static_result(t) for t in plan.targets]


# A load that needed a layer the stream left out: the classic store (20.10's and 25+'s layouts), the containerd store.
_LOST_LAYER = re.compile(r"(layer\.tar|blobs/sha256/[0-9a-f]{64}): no such file or directory|content digest sha256:[0-9a-f]{64}: not found"
    r'|layer "[^"]+" not found')


def _resend_in_full(plan: MovePlan, senders: Sequence[TargetPlan], delivery: Delivery, reporter: Reporter, engines: EnginePool) -> None:
    def send_again(full: list[TargetPlan]) -> Delivery:
        again_plan = replace(plan, targets=tuple(full))
        for target in full:
            reporter.start(target.host.name, again_plan.bytes_for(target))
        return _deliver(again_plan, full, reporter, None, engines)

    resend_in_full(senders, delivery, engines, plan.layers, plan.contents, send_again)


def resend_in_full(
    senders: Sequence[TargetPlan], delivery: Delivery, engines: EnginePool, layers: dict[str, tuple[str, ...]],
    contents: dict[str, str], send_again: Callable[[list[TargetPlan]], Delivery],
) -> None:  # fmt: skip
    """Targets that lacked a layer their stream left out get everything, once (``send_again``). Either
    their load failed (an image removed meanwhile: nothing new is there), or it made an image that is
    not whole: the containerd store accepts a left-out layer whose snapshot it has even when its content
    store lacks that layer's uncompressed blob (the base came by a pull), and the image then inspects
    without layers; loading it again whole completes it, under the same ID. Moves and bundle loads."""
    why = {t.host.name: reason for t in senders if t.skip_layers and (reason := _lacked_a_layer(t, delivery, engines, layers, contents))}
    lost = [t for t in senders if t.host.name in why]
    if not lost:
        return
    full = [replace(t, skip_layers=frozenset()) for t in lost]
    again = send_again(full)
    for target in full:
        name = target.host.name
        delivery.sent[name] = delivery.sent.get(name, 0) + again.sent.get(name, 0)
        delivery.errors[name] = again.errors.get(name)
        delivery.target_notes[name] = f"{why[name]}: sent again with every layer"


def _send_incomplete_pulls_over_ssh(
    plan: MovePlan, senders: Sequence[TargetPlan], delivery: Delivery, reporter: Reporter, engines: EnginePool
) -> None:  # fmt: skip
    """The registry route: a containerd-store target whose pull left the image incomplete gets it
    the other way (SSH, host to host where it can; else the Docker API), whole.

    Docker's pull into that store does not download layers the engine already holds unpacked (they
    came by ``docker load``), and the image it makes lacks their content (moby/moby#49784): it runs,
    but cannot be saved or pushed (28.5 inspects it without layers; 26.1 leaves it out of its list). The reference the pull
    added is removed first, so nothing points at the incomplete image."""
    if plan.route != "registry":
        return
    stuck = [
        t for t in senders
        if t.store == "containerd" and delivery.errors.get(t.host.name) is None and _incomplete(t, delivery, engines, plan.layers, plan.contents)
    ]  # fmt: skip
    if not stuck:
        return
    route, _, host_to_host = choose_route(plan.source, [t.host for t in stuck], None)
    oci = streams_oci(engines.get(plan.source).info(), host_to_host, plan.store_read)
    images = [img for img in plan.images if img.id in plan.send_ids]
    stuck = [replace(t, skip_layers=thin_skip(target_view(t.host, engines), images, oci)) for t in stuck]  # only what it lacks
    again_plan = replace(plan, route=route, host_to_host=host_to_host, targets=tuple(stuck), registry=None)
    notes = {}
    for target in stuck:
        name = target.host.name
        notes[name] = _untag(target, engines, delivery.untag_after.pop(name, []))
        delivery.local_ids.pop(name, None)
        reporter.start(name, again_plan.bytes_for(target))
    again = _deliver(again_plan, stuck, reporter, None, engines)
    _resend_in_full(again_plan, stuck, again, reporter, engines)
    for target in stuck:
        name = target.host.name
        delivery.sent[name] = delivery.sent.get(name, 0) + again.sent.get(name, 0)
        delivery.errors[name] = again.errors.get(name)
        why = "its engine's pull left the image incomplete (Docker skips layers it holds unpacked: moby/moby#49784)"
        delivery.target_notes[name] = "; ".join(x for x in (f"{why}: sent over {again.path} instead", notes[name]) if x)


def _incomplete(
    target: TargetPlan, delivery: Delivery, engines: EnginePool, layers: dict[str, tuple[str, ...]], contents: dict[str, str]
) -> bool:  # fmt: skip
    try:
        _arrived(target, engines.get(target.host), layers, delivery.local_ids.get(target.host.name), contents)
    except ShipperError:
        return True
    return False


def _lacked_a_layer(
    target: TargetPlan, delivery: Delivery, engines: EnginePool, layers: dict[str, tuple[str, ...]], contents: dict[str, str]
) -> str:  # fmt: skip
    """Why the target could not do without the layers its stream left out ("" when it could, or failed otherwise)."""
    name = target.host.name
    if delivery.errors.get(name) is not None:
        return "it no longer held layers the plan left out" if _LOST_LAYER.search(_message(delivery.errors[name])) else ""
    if target.store != "containerd" or not _incomplete(target, delivery, engines, layers, contents):
        return ""
    return "its containerd store holds layers the plan left out, but not their uncompressed content (they came by a pull)"


def _message(error: ShipperError | None) -> str:
    return error.message if error is not None else ""


def static_result(target: TargetPlan) -> TargetResult:
    if target.action == "failed":
        return TargetResult(target.host.name, "failed", error=target.error)
    if target.action == "skip":
        return TargetResult(target.host.name, "skipped", note=target.reason)
    return TargetResult(target.host.name, "unchanged", note=target.reason)
