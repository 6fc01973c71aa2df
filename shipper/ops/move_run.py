"""Carry out a move plan: one save, streamed to every target that needs it, then tags.

The order on each target is what keeps it whole:

1. the images load untagged (the stream's tags were taken out on the way);
2. every image's ID is checked on the target;
3. only then do the tags move, and each is checked to point at its image.

If anything fails before step 3, the target's tags are exactly as they were,
and an image the failed attempt left behind untagged is removed again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Sequence

from shipper.archive.savestream import ArchiveError, SaveStreamFilter
from shipper.engine import connect
from shipper.errors import EngineError, ShipperError
from shipper.ops.fanout import for_each_host
from shipper.ops.move_plan import MovePlan, TargetPlan
from shipper.ops.streams import Sink, make_sinks, make_source
from shipper.progress import NullReporter, Reporter

COALESCE = 1 << 20  # headers and small members are gathered into chunks of about this size

Status = Literal["moved", "tagged", "unchanged", "skipped", "failed"]


@dataclass(frozen=True)
class TargetResult:
    host: str
    status: Status
    bytes_sent: int = 0
    seconds: float = 0.0
    error: ShipperError | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


class SourceFailed(ShipperError):
    """The source stream could not be read to its end, or was not sound."""


def _pump(plan: MovePlan, sinks: Sequence[Sink], reporter: Reporter) -> int:
    """Stream the source through the filter into every live sink; the bytes read from the source."""
    source = make_source(plan.route, plan.source, plan.send_ids)
    check = SaveStreamFilter(plan.send_ids)
    pending = bytearray()

    def deliver(chunk: bytes | memoryview) -> None:
        for sink in sinks:
            if sink.put(chunk):
                reporter.advance(sink.host.name, sink.sent)

    try:
        for piece in check.run(source.chunks()):
            if len(piece) < COALESCE // 4:
                pending += piece
                if len(pending) < COALESCE:
                    continue
                piece, pending = bytes(pending), bytearray()
            elif pending:
                deliver(bytes(pending))
                pending = bytearray()
            deliver(piece)
            if all(s.failed for s in sinks):
                source.abort()
                return check.stats.bytes_in
        if pending:
            deliver(bytes(pending))
    except (ArchiveError, ShipperError) as exc:
        source.abort()
        # The source's own words (docker save's error) explain a broken stream best.
        failure = source.failure()
        raise failure or SourceFailed(f"the stream from {plan.source.describe()} is not sound: {exc}") from None
    failure = source.failure()
    if failure:
        raise failure
    return check.stats.bytes_in


def _explain_source_failure(plan: MovePlan, error: ShipperError) -> ShipperError:
    """The engine's words for a save of a removed image are cryptic; say it plainly."""
    try:
        with connect(plan.source) as engine:
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


def _commit(target: TargetPlan) -> None:
    """Check every sent image is on the target, then point the tags, then check them."""
    with connect(target.host) as engine:
        for image_id in target.send_ids:
            if engine.inspect_image(image_id) is None:
                raise EngineError(f"image {image_id} is missing on {target.host.describe()} after the load")
        for name, image_id in target.tags:
            engine.tag(image_id, name)
        for name, image_id in target.tags:
            now = engine.inspect_image(name)
            if now is None or now.id != image_id:
                raise EngineError(f"{name} on {target.host.describe()} does not point at {image_id} after tagging")


def _rollback(target: TargetPlan) -> str:
    """Remove untagged images a failed attempt left behind; say what could not be done."""
    try:
        with connect(target.host) as engine:
            for image_id in target.send_ids:
                if image_id in target.present_ids:
                    continue
                details = engine.inspect_image(image_id)
                if details is not None and not details.tags:
                    engine.remove_image(image_id)
    except ShipperError as exc:
        return f"could not check for leftovers: {exc.message}"
    return ""


def _finish_target(target: TargetPlan, sink: Sink | None, started: float, reporter: Reporter) -> TargetResult:
    name = target.host.name
    sent = sink.sent if sink else 0
    error = sink.error if sink else None
    if error is None:
        try:
            _commit(target)
        except ShipperError as exc:
            error = exc
    elapsed = time.monotonic() - started
    if error is not None:
        reporter.finish(name, "failed")
        return TargetResult(name, "failed", sent, elapsed, error, _rollback(target) if target.send_ids else "")
    status: Status = "moved" if target.action == "send" else "tagged"
    reporter.finish(name, status)
    return TargetResult(name, status, sent, elapsed)


def run_move(plan: MovePlan, reporter: Reporter | None = None) -> list[TargetResult]:
    """Execute ``plan``; one result per target, in the plan's order."""
    reporter = reporter or NullReporter()
    started = time.monotonic()
    senders = [t for t in plan.targets if t.action == "send"]
    sinks: dict[str, Sink] = {}
    if senders:
        for target in senders:
            reporter.start(target.host.name, plan.bytes_for(target))
        for sink in make_sinks(plan.route, [t.host for t in senders]):
            sinks[sink.host.name] = sink
        try:
            _pump(plan, list(sinks.values()), reporter)
        except ShipperError as exc:
            error = _explain_source_failure(plan, exc)
            for sink in sinks.values():
                sink.abort()
                sink.error = error
        else:
            for sink in sinks.values():
                sink.finish()
    movers = [t for t in plan.targets if t.action in ("send", "tag")]
    finished = {
        o.host.name: o.value
        for o in for_each_host([t.host for t in movers], lambda h: _finish_target(_by_name(movers, h.name), sinks.get(h.name), started, reporter))
    }
    return [finished.get(t.host.name) or _static_result(t) for t in plan.targets]


def _by_name(targets: Sequence[TargetPlan], name: str) -> TargetPlan:
    return next(t for t in targets if t.host.name == name)


def _static_result(target: TargetPlan) -> TargetResult:
    if target.action == "failed":
        return TargetResult(target.host.name, "failed", error=target.error)
    if target.action == "skip":
        return TargetResult(target.host.name, "skipped", note=target.reason)
    return TargetResult(target.host.name, "unchanged", note=target.reason)
